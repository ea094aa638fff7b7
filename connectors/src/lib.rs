//! Field connectors of Headroom (filled by the connectors issue): SCADA feeder-head
//! measurements over OPC UA, distribution-transformer monitoring terminals over
//! Modbus TCP, and the metering system's 15-minute interval files. Each connector
//! writes through the engine's `ReadingSink` and reports its state and counters.
