"""Messages between a monitor and its worker process, tensors' bytes sent as they lie in memory.

`send(conn, obj)` pickles `obj` (protocol 5) with the bytes of every tensor (and of every numpy
array: a DataFrame's columns) left out of the pickle as out-of-band buffers, then sends the
pickle and each buffer as it is (no copy into the pickle, no `torch.save`); `receive(conn)` reads
each buffer into fresh memory, which the rebuilt tensors and arrays then own. Plain `pickle` is
used, not multiprocessing's (whose torch reducers would move tensors to shared memory through a
resource sharer that the worker, not started by multiprocessing, cannot reach). Only for the
connection between a monitor and the worker it started (unpickling runs code: never for files).

>>> from multiprocessing import Pipe
>>> a, b = Pipe()
>>> send(a, {"w": torch.arange(6.0).reshape(2, 3)[:, 1:], "empty": torch.zeros(0, 2), "n": 3})
>>> got = receive(b)
>>> got["w"].tolist(), tuple(got["empty"].shape), got["n"]
([[1.0, 2.0], [4.0, 5.0]], (0, 2), 3)
"""

from __future__ import annotations

import io
import pickle
from multiprocessing.connection import Connection

import torch


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj):
        if isinstance(obj, torch.Tensor) and type(obj) in (torch.Tensor, torch.nn.Parameter):
            tensor = obj.detach().to("cpu").contiguous()
            if not tensor.numel():
                return _empty, (tensor.dtype, tuple(tensor.shape))
            raw = pickle.PickleBuffer(tensor.reshape(-1).view(torch.uint8).numpy())
            return _tensor, (raw, tensor.dtype, tuple(tensor.shape))
        return NotImplemented


def _empty(dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.zeros(shape, dtype=dtype)


def _tensor(raw, dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.frombuffer(raw, dtype=torch.uint8).view(dtype).reshape(shape)


def pack(obj) -> tuple[memoryview, list[memoryview]]:
    """`obj`'s pickle and the buffers left out of it (raises what pickling raises: nothing is sent yet)."""
    buffers: list[pickle.PickleBuffer] = []
    stream = io.BytesIO()
    _Pickler(stream, protocol=5, buffer_callback=buffers.append).dump(obj)
    return stream.getbuffer(), [buffer.raw() for buffer in buffers]


def send(conn: Connection, obj) -> None:
    """Send `obj` over `conn`: its pickle, then the tensors' and arrays' bytes one buffer at a time."""
    send_packed(conn, pack(obj))


def send_packed(conn: Connection, packed: tuple[memoryview, list[memoryview]]) -> None:
    """Send what `pack` made."""
    data, views = packed
    conn.send_bytes(pickle.dumps((data.nbytes, [view.nbytes for view in views]), protocol=5))
    conn.send_bytes(data)
    for view in views:
        conn.send_bytes(view)


def receive(conn: Connection):
    """What `send` sent (EOFError once the other end is closed)."""
    size, sizes = pickle.loads(conn.recv_bytes())
    data = bytearray(size)
    conn.recv_bytes_into(data)
    buffers = [bytearray(n) for n in sizes]
    for buffer in buffers:
        conn.recv_bytes_into(buffer)
    return pickle.loads(data, buffers=buffers)
