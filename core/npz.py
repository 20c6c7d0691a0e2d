"""Uncompressed ``.npz`` archives built in memory in one pass.

An ``.npz`` file is a ZIP archive whose members ``<name>.npy`` are arrays in NumPy's
``.npy`` format (:mod:`numpy.lib.format`); :func:`numpy.savez` writes one through
:mod:`zipfile`, member by member, seeking back to patch each local header. A run
writes several small archives per save (checkpoint, problem, trace chunks), and for
arrays of a few kilobytes that machinery costs more than the data: measured on the
development machine, 150 us for a checkpoint of three arrays and 350 us for a
problem of six, against 34 us and 110 us here (``tests/core/test_npz.py`` checks that
the archives read back, member for member, as numpy's). :func:`npz_bytes`
builds the same archive (stored members, the ``.npy`` header of
:func:`numpy.lib.format.write_array_header_1_0`, CRC-32 of each member) as bytes,
with a fixed timestamp (1980-01-01 00:00, the ZIP epoch), so equal arrays give equal
files. Large archives (arrays over :data:`MAX_BYTES` in all, where the fixed cost
no longer matters and holding a copy of the data in memory would), and those that
would need ZIP64, are left to :func:`numpy.savez`, which streams to the file.

Reference: PKWARE, *APPNOTE.TXT - .ZIP File Format Specification*, version 6.3.10,
sections 4.3.7 (local file header), 4.3.12 (central directory header) and 4.3.16
(end of central directory record).
"""

import functools
import io
import struct
import zlib

import numpy as np
from numpy.lib import format as npy_format

__all__ = ["npz_bytes"]

_LOCAL = struct.Struct("<IHHHHHIIIHH")  # 30 bytes, then the name
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")  # 46 bytes, then the name
_END = struct.Struct("<IHHHHIIH")  # 22 bytes
_VERSION = 20  # 2.0: stored members, no ZIP64
_MADE_BY = (3 << 8) | _VERSION  # Unix
_DATE = (0 << 9) | (1 << 5) | 1  # 1980-01-01
_TIME = 0
_MODE = 0o600 << 16  # what zipfile gives members written with ZipFile.open(name, "w")
_LIMIT = 2**32 - 1  # the largest size or offset without ZIP64

MAX_BYTES = 16 * 2**20
"""Arrays of more bytes than this in all are left to :func:`numpy.savez`."""


def _npy_header(descr, fortran_order, shape):
    """The ``.npy`` header (format 1.0) for these fields, or None when it needs format 2."""
    if isinstance(descr, str):  # (a structured dtype's descr is a list: not cached)
        return _cached_header(descr, fortran_order, shape)
    return _header(descr, fortran_order, shape)


def _header(descr, fortran_order, shape):
    out = io.BytesIO()
    fields = {"descr": descr, "fortran_order": fortran_order, "shape": shape}
    try:
        npy_format.write_array_header_1_0(out, fields)
    except ValueError:  # a header over 64 KiB (format 2.0): left to numpy.savez
        return None
    return out.getvalue()


_cached_header = functools.lru_cache(maxsize=512)(_header)


def _npy(array):
    """The ``.npy`` bytes of ``array``, as :func:`numpy.lib.format.write_array` writes them
    (Fortran order for a Fortran-contiguous array, else C order), or None when its
    header needs format 2. Headers are cached by dtype, order and shape (a run's
    saves repeat them)."""
    dtype = array.dtype
    if dtype.isbuiltin == 1 and dtype.metadata is None:  # (numpy's descr: dtype.str)
        flags = array.flags
        fortran_order = flags.f_contiguous and not flags.c_contiguous
        header = _cached_header(dtype.str, fortran_order, array.shape)
    else:
        fields = npy_format.header_data_from_array_1_0(array)
        fortran_order = fields["fortran_order"]
        header = _npy_header(fields["descr"], fortran_order, fields["shape"])
    if header is None:
        return None
    return header + array.tobytes(order="F" if fortran_order else "C")


def npz_bytes(arrays):
    """The ``.npz`` archive of ``arrays`` as bytes, or None where :func:`numpy.savez` must write it.

    Parameters
    ----------
    arrays : dict of str -> ndarray
        Member names (without ``.npy``) and arrays; no object arrays (the caller
        refuses them: nothing is pickled).

    Returns
    -------
    bytes or None
        None when the arrays hold more than :data:`MAX_BYTES`, or the archive would
        need ZIP64 or a format-2 ``.npy`` header.

    Examples
    --------
    >>> import io, numpy as np
    >>> data = npz_bytes({"W": np.eye(2), "step": np.array(3)})
    >>> loaded = np.load(io.BytesIO(data))
    >>> loaded["W"].tolist(), int(loaded["step"])
    ([[1.0, 0.0], [0.0, 1.0]], 3)
    """
    if len(arrays) > 0xFFFF or sum(np.asarray(a).nbytes for a in arrays.values()) > MAX_BYTES:
        return None
    parts, central, offset = [], [], 0
    for key, array in arrays.items():
        data = _npy(array)
        if data is None or len(data) > _LIMIT:
            return None
        name = f"{key}.npy".encode()
        crc, size = zlib.crc32(data), len(data)
        parts += [
            _LOCAL.pack(0x04034B50, _VERSION, 0, 0, _TIME, _DATE, crc, size, size, len(name), 0)
        ]
        parts += [name, data]
        central += [
            _CENTRAL.pack(
                0x02014B50,
                _MADE_BY,
                _VERSION,
                0,
                0,
                _TIME,
                _DATE,
                crc,
                size,
                size,
                len(name),
                0,
                0,
                0,
                0,
                _MODE,
                offset,
            ),
            name,
        ]
        offset += _LOCAL.size + len(name) + size
    directory = b"".join(central)
    if offset > _LIMIT or len(directory) > _LIMIT:
        return None
    count = len(arrays)
    end = _END.pack(0x06054B50, 0, 0, count, count, len(directory), offset, 0)
    return b"".join(parts) + directory + end
