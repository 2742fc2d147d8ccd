"""A minimal GGUF v3 writer (our own), enough for F32/F16 llama models.

Layout written (little-endian throughout):
    magic "GGUF", u32 version = 3, u64 n_tensors, u64 n_kv,
    n_kv x (string key, u32 value type, value),
    n_tensors x (string name, u32 n_dims, u64 dims[n_dims] (fastest first), u32 ggml type,
                 u64 offset relative to the data section),
    zero padding to `alignment`, then the tensor data, each tensor starting at a multiple
    of `alignment` (32, also stored as general.alignment).
A GGUF string is a u64 byte length followed by the UTF-8 bytes (no terminator). An array
is u32 element type, u64 count, then the elements.
Tensor dims are listed fastest-varying first, so a row-major numpy array of shape
(rows, cols) is written with dims [cols, rows].
"""

import struct

import numpy as np

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3

# metadata value types
T_UINT8, T_INT8, T_UINT16, T_INT16, T_UINT32, T_INT32, T_FLOAT32, T_BOOL, T_STRING, T_ARRAY, \
    T_UINT64, T_INT64, T_FLOAT64 = range(13)

# ggml tensor types
GGML_F32, GGML_F16 = 0, 1

_SCALAR_FMT = {T_UINT8: "<B", T_INT8: "<b", T_UINT16: "<H", T_INT16: "<h", T_UINT32: "<I",
               T_INT32: "<i", T_FLOAT32: "<f", T_BOOL: "<?", T_UINT64: "<Q", T_INT64: "<q",
               T_FLOAT64: "<d"}


def _str(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _value(vtype, v):
    if vtype == T_STRING:
        return _str(v)
    return struct.pack(_SCALAR_FMT[vtype], v)


class GGUFWriter:
    def __init__(self, alignment=32):
        self.alignment = alignment
        self.kv = []       # (key, bytes of type + value)
        self.tensors = []  # (name, np.ndarray already in its stored dtype, ggml type)
        self.add("general.alignment", T_UINT32, alignment)

    def add(self, key, vtype, value):
        """Scalar or string metadata."""
        self.kv.append((key, struct.pack("<I", vtype) + _value(vtype, value)))

    def add_array(self, key, etype, values):
        """Array metadata of scalars or strings (element type `etype`)."""
        body = struct.pack("<IIQ", T_ARRAY, etype, len(values))
        if etype == T_STRING:
            body += b"".join(_str(v) for v in values)
        elif etype == T_FLOAT32:
            body += np.asarray(values, dtype="<f4").tobytes()
        elif etype == T_INT32:
            body += np.asarray(values, dtype="<i4").tobytes()
        else:
            body += b"".join(_value(etype, v) for v in values)
        self.kv.append((key, body))

    def add_tensor(self, name, arr, ggml_type=GGML_F32):
        """`arr` is row-major with the GGUF shape reversed (e.g. (n_out, n_in) for a matmul)."""
        if ggml_type == GGML_F32:
            a = np.ascontiguousarray(arr, dtype="<f4")
        elif ggml_type == GGML_F16:
            a = np.ascontiguousarray(arr, dtype="<f2")
        else:
            raise ValueError("unsupported ggml type %d for %s" % (ggml_type, name))
        self.tensors.append((name, a, ggml_type))

    def _pad(self, n):
        return (-n) % self.alignment

    def write(self, path):
        head = bytearray()
        head += GGUF_MAGIC + struct.pack("<IQQ", GGUF_VERSION, len(self.tensors), len(self.kv))
        for key, body in self.kv:
            head += _str(key) + body
        offset = 0
        offsets = []
        for name, a, gt in self.tensors:
            offsets.append(offset)
            dims = list(reversed(a.shape))
            head += _str(name) + struct.pack("<I", len(dims))
            head += b"".join(struct.pack("<Q", d) for d in dims)
            head += struct.pack("<IQ", gt, offset)
            offset += a.nbytes + self._pad(a.nbytes)
        head += b"\0" * self._pad(len(head))
        with open(path, "wb") as f:
            f.write(head)
            for (name, a, gt), off in zip(self.tensors, offsets):
                f.write(a.tobytes())
                f.write(b"\0" * self._pad(a.nbytes))
        return len(head) + offset
