"""An OPC UA server we did not write (asyncua), serving a small point set for the
connector's interoperability test.

Namespace "urn:headroom:interop", string node ids:
- F_L0.p_kw: Double 2500.25, good, source timestamp 2026-07-01T00:00:00Z
- F_L0.i_a: Float 121.5, good, same timestamp
- F_L22.p_kw: Int32 2 (MW; the test scales it), good, 2026-07-01T00:15:00Z
- F_L0.q_kvar: Double 300.0 with status BadSensorFailure, 2026-07-01T00:00:00Z

Prints the port it listens on (a free one on 127.0.0.1), then the namespace
index, then serves until killed.
"""

import asyncio
import datetime
import logging
import socket
import sys

from asyncua import Server, ua

T0 = datetime.datetime(2026, 7, 1, tzinfo=datetime.timezone.utc)


async def main():
    logging.basicConfig(level=logging.ERROR)
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()

    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    namespace = await server.register_namespace("urn:headroom:interop")
    folder = await server.nodes.objects.add_folder(ua.NodeId("F_L0", namespace), "F_L0")

    points = [
        ("F_L0.p_kw", ua.Variant(2500.25, ua.VariantType.Double), ua.StatusCodes.Good, T0),
        ("F_L0.i_a", ua.Variant(121.5, ua.VariantType.Float), ua.StatusCodes.Good, T0),
        (
            "F_L22.p_kw",
            ua.Variant(2, ua.VariantType.Int32),
            ua.StatusCodes.Good,
            T0 + datetime.timedelta(minutes=15),
        ),
        ("F_L0.q_kvar", ua.Variant(300.0, ua.VariantType.Double), ua.StatusCodes.BadSensorFailure, T0),
    ]
    async with server:
        for name, variant, status, at in points:
            node = await folder.add_variable(ua.NodeId(name, namespace), name, variant)
            value = ua.DataValue(
                Value=variant,
                StatusCode_=ua.StatusCode(status),
                SourceTimestamp=at,
                ServerTimestamp=datetime.datetime.now(datetime.timezone.utc),
            )
            await server.write_attribute_value(node.nodeid, value)
        print(port, flush=True)
        print(namespace, flush=True)
        while True:
            await asyncio.sleep(3600)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
