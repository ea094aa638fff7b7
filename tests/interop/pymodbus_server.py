"""A Modbus TCP server we did not write (pymodbus), serving a small point set
for the connector's interoperability test.

Unit 1, input registers 0..4: p_kw = 321.5 and q_kvar = -12.25 as big-endian
f32; holding register 10: i_a x 10 as u16 (457). Prints the port it listens on
(bound to 127.0.0.1:0), then serves until killed.
"""

import asyncio
import socket
import struct
import sys

from pymodbus.datastore import (
    ModbusSequentialDataBlock,
    ModbusServerContext,
    ModbusSlaveContext,
)
from pymodbus.server import StartAsyncTcpServer


def f32_words(value):
    high, low = struct.unpack(">HH", struct.pack(">f", value))
    return [high, low]


async def main():
    # pymodbus offsets data blocks by one: address 0 is block index 1.
    inputs = ModbusSequentialDataBlock(0, [0] + f32_words(321.5) + f32_words(-12.25) + [0] * 16)
    holding = ModbusSequentialDataBlock(0, [0] * 11 + [457] + [0] * 8)
    unit = ModbusSlaveContext(ir=inputs, hr=holding)
    context = ModbusServerContext(slaves={1: unit}, single=False)
    # Find a free port, then serve on it (pymodbus does not report port 0's).
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    print(port, flush=True)
    await StartAsyncTcpServer(context=context, address=("127.0.0.1", port))


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
