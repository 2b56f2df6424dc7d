"""System shared memory regions, registered by key exactly as ``tritonclient.utils.shared_memory`` makes them.

Regions are read and written with ``pread`` / ``pwrite`` on the descriptor opened at registration, never through
a mapping: a client can truncate its object at any time, and touching a mapped page past the new end of the file
kills the whole process with SIGBUS. A short read or a region past the object's current size is the request's
INVALID_ARGUMENT instead, and every other client goes on being served.
"""

from __future__ import annotations

import os
import stat
import threading
from dataclasses import dataclass

from .errors import AlreadyExists, InvalidArgument, NotFound


@dataclass
class Region:
    name: str
    key: str
    offset: int
    byte_size: int
    fd: int


SHM_DIR = "/dev/shm"
MAX_KEY_LENGTH = 255  # NAME_MAX


def shm_name(key: str) -> str:
    """The file name inside /dev/shm of a POSIX shared memory key: one optional leading '/', no other '/',
    no NUL, not '.' or '..'. Anything else is refused before the file system is touched."""
    name = key[1:] if key.startswith("/") else key
    if not name or len(name) > MAX_KEY_LENGTH or "/" in name or "\0" in name or name in (".", ".."):
        raise InvalidArgument(
            f"invalid shared memory key {key!r}: a POSIX shared memory name is '/' followed by up to "
            f"{MAX_KEY_LENGTH} characters without '/' (as shm_open takes it)")
    return name


def open_shm(key: str, shm_dir: str = SHM_DIR) -> int:
    """Open a shared memory object for reading and writing, inside ``shm_dir`` only: no path, no symlink
    (O_NOFOLLOW), regular files only. Every refusal reads the same, so it reveals nothing else."""
    name = shm_name(key)
    refused = InvalidArgument(f"Unable to open shared memory region: '{key}': no such shared memory object "
                              "(create it with shm_open, or tritonclient's create_shared_memory_region)")
    try:
        dir_fd = os.open(shm_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise refused from e
    try:
        fd = os.open(name, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError as e:
        raise refused from e
    finally:
        os.close(dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise refused
    return fd


class SharedMemoryManager:
    """Holds the POSIX shared memory objects (``/dev/shm/<key>``) that clients register by name, one open
    descriptor each."""

    def __init__(self, shm_dir: str = SHM_DIR) -> None:
        self._regions: dict[str, Region] = {}
        self._lock = threading.Lock()
        self._dir = shm_dir

    def register(self, name: str, key: str, offset: int, byte_size: int) -> None:
        with self._lock:
            if name in self._regions:
                raise AlreadyExists(f"shared memory region '{name}' already in manager")
            if offset < 0 or byte_size <= 0:
                raise InvalidArgument(f"failed to register shared memory region '{name}': offset ({offset}) must "
                                      f"be non-negative and byte size ({byte_size}) positive")
            fd = open_shm(key, self._dir)
            try:
                total = os.fstat(fd).st_size
                if offset + byte_size > total:
                    raise InvalidArgument(
                        f"failed to register shared memory region '{name}': invalid args: offset {offset} and "
                        f"byte size {byte_size} exceed the object's size {total}")
            except BaseException:
                os.close(fd)
                raise
            self._regions[name] = Region(name, key, offset, byte_size, fd)

    def unregister(self, name: str = "") -> None:
        """Unregister one region, or all when ``name`` is empty (as Triton does)."""
        with self._lock:
            names = [name] if name else list(self._regions)
            for n in names:
                region = self._regions.pop(n, None)
                if region is not None:
                    os.close(region.fd)

    def status(self, name: str = "") -> list[Region]:
        with self._lock:
            if name:
                if name not in self._regions:
                    raise NotFound(f"Unable to find system shared memory region: '{name}'")
                return [self._regions[name]]
            return list(self._regions.values())

    def _get(self, name: str, offset: int, size: int) -> Region:
        region = self._regions.get(name)
        if region is None:
            raise NotFound(f"Unable to find shared memory region: '{name}'")
        if offset < 0 or size < 0 or offset + size > region.byte_size:
            raise InvalidArgument(
                f"Invalid offset + byte size for shared memory region: '{name}' "
                f"({offset} + {size} > {region.byte_size})")
        return region

    def read(self, name: str, size: int, offset: int) -> bytes:
        with self._lock:
            r = self._get(name, offset, size)
            data = os.pread(r.fd, size, r.offset + offset)
        if len(data) != size:
            raise InvalidArgument(self._shrunk(r, "read", size, offset))
        return data

    def write(self, name: str, offset: int, size: int, data: bytes, tensor: str) -> None:
        with self._lock:
            r = self._get(name, offset, size)
            if len(data) > size:
                raise InvalidArgument(
                    f"shared memory size specified with the request for output '{tensor}' ({size} bytes) "
                    f"should be at least {len(data)} bytes to hold the results")
            start = r.offset + offset
            # pwrite past the end would grow the client's object: refuse a region that no longer holds it
            if os.fstat(r.fd).st_size < start + len(data):
                raise InvalidArgument(self._shrunk(r, "write", len(data), offset))
            os.pwrite(r.fd, data, start)

    @staticmethod
    def _shrunk(r: Region, verb: str, size: int, offset: int) -> str:
        return (f"shared memory region '{r.name}' (key '{r.key}') no longer holds the {size} bytes to {verb} at "
                f"offset {offset}: its object was truncated after registration; unregister it and register it "
                "again with its current size")

    def close(self) -> None:
        self.unregister("")
