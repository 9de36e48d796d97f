"""Another process shrinks a mapped file: no signal, the set keeps its rules (issue 14, point 1).

The race runs in a child interpreter, so a SIGBUS shows up as the child's exit status
instead of killing the test run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from support.sets import PAGE

from pmemsim import MemFlags, PmemsetError, Source

_RACE = textwrap.dedent(
    """
    import multiprocessing, os, sys, time
    from pmemsim import Config, Granularity, MmapAddressSpace, PmemSet, PmemsetError, Source

    path, size, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

    def shrink_and_grow(path, size):
        # A careless neighbour: the file flips between empty and full size, forever.
        fd = os.open(path, os.O_RDWR)
        parent = os.getppid()
        while os.getppid() == parent:  # ends with the process under test, however it ends
            os.ftruncate(fd, 0)
            time.sleep(0.0002)
            os.ftruncate(fd, size)
            time.sleep(0.0002)

    space = MmapAddressSpace()
    pset = PmemSet(Config(Granularity.PAGE, address_space=space))
    desc = pset.part_map(pset.part_new(Source.from_file(path)))
    neighbour = multiprocessing.get_context("fork").Process(target=shrink_and_grow, args=(path, size))
    neighbour.start()
    done = refused = 0
    try:
        for i in range(rounds):
            addr = desc.addr + (i * 4093) % (size - 64)
            try:
                data = pset.read(addr, 64)
                assert len(data) == 64
                pset.write(addr, b"x" * 64)
                pset.memcpy(addr, b"y" * 64)
                pset.memset(addr, 7, 64, 0)
                pset.persist(addr, 64)
                done += 1
            except PmemsetError:
                refused += 1  # an OS error, reported: allowed, never a signal
    finally:
        neighbour.kill()
        neighbour.join()
    pset.close()
    space.close()
    print("survived", done, refused)
    """
)


def test_a_file_shrunk_and_grown_by_another_process_never_kills_the_interpreter(tmp_path):
    path = tmp_path / "victim.pmem"
    size = 16 * PAGE
    path.write_bytes(bytes(size))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run(
        [sys.executable, "-c", _RACE, str(path), str(size), "3000"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode != -signal.SIGBUS, "the interpreter was killed by SIGBUS"
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("survived"), proc.stdout
    done, refused = map(int, proc.stdout.split()[1:])
    assert done + refused == 3000


def test_reads_past_the_end_of_a_shrunk_file_give_zeros_and_writes_grow_it(make_set, make_file):
    # The rule both backends follow (plain file I/O), checked without any race.
    path = make_file(4 * PAGE, fill=b"a")
    pset = make_set()
    with Source.from_file(path) as src:
        desc = pset.part_map(pset.part_new(src))
    other = os.open(path, os.O_RDWR)  # the neighbour's own descriptor
    try:
        os.ftruncate(other, PAGE + 100)
        assert pset.read(desc.addr + PAGE, 200) == b"a" * 100 + bytes(100)
        assert pset.read(desc.addr + 3 * PAGE, 10) == bytes(10)
        pset.memcpy(desc.addr + 2 * PAGE, b"z" * 16, flags=MemFlags(0))
        assert os.stat(path).st_size == 2 * PAGE + 16
        assert pset.read(desc.addr + 2 * PAGE, 16) == b"z" * 16
        with open(path, "rb") as f:
            f.seek(2 * PAGE)
            assert f.read() == b"z" * 16
        os.ftruncate(other, 0)
        pset.persist(desc.addr, 4 * PAGE)  # a flush of a range past the end: no signal, no error
        assert pset.read(desc.addr, 8) == bytes(8)
    finally:
        os.close(other)
    pset._check()


@pytest.mark.parametrize("backend", ["mmap"], indirect=True)
def test_writes_by_the_set_are_seen_by_a_plain_read_of_the_file_and_back(make_set, make_file):
    # pwrite and the shared mapping are one page cache: both views agree at once.
    path = make_file(2 * PAGE)
    pset = make_set()
    with Source.from_file(path) as src:
        desc = pset.part_map(pset.part_new(src))
    pset.write(desc.addr + 10, b"hello")
    with open(path, "r+b") as f:
        f.seek(10)
        assert f.read(5) == b"hello"
        f.seek(PAGE)
        f.write(b"world")
    assert pset.read(desc.addr + PAGE, 5) == b"world"
    with pytest.raises(PmemsetError):
        pset.read(desc.addr + 2 * PAGE, 1)  # outside the part map: refused, not read
