#!/usr/bin/env python3
# bench/delay_proxy.py: a TCP proxy on 127.0.0.1 that adds a fixed one-way
# delay to every chunk it forwards, in both directions, keeping each
# direction's order (a network whose round trip is twice the delay), for
# bench/latency.sh. Sets TCP_NODELAY on both sides and TCP_QUICKACK after
# each read, so that the proxy adds no delayed-ACK stalls of its own.
#
#   delay_proxy.py LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT DELAY_SECONDS
import asyncio
import socket
import sys
import time


def quickack(writer):
    sock = writer.get_extra_info("socket")
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
    except OSError:
        pass


async def pipe(reader, writer, ack_on, delay):
    queue = asyncio.Queue()

    async def read():
        while True:
            chunk = await reader.read(1 << 16)
            quickack(ack_on)
            await queue.put((time.monotonic(), chunk))
            if not chunk:
                return

    async def write():
        while True:
            at, chunk = await queue.get()
            wait = at + delay - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not chunk:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(chunk)
            await writer.drain()

    try:
        await asyncio.gather(read(), write())
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def main():
    port, host, upstream_port, delay = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])

    async def handle(client_r, client_w):
        try:
            server_r, server_w = await asyncio.open_connection(host, upstream_port)
        except OSError:
            client_w.close()
            return
        for w in (client_w, server_w):
            w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(
            pipe(client_r, server_w, client_w, delay), pipe(server_r, client_w, server_w, delay)
        )

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


asyncio.run(main())
