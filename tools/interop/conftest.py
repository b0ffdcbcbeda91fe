"""Fixtures that run a real `spindle serve` process for the interop tests.

Each test module gets one broker (`broker`), started on free loopback ports
with a fresh data directory; tests in a module use their own topic names.
Tests that need special flags, a crash or a restart make their own through
`broker_factory`. Every broker is stopped with SIGTERM at teardown, and the
teardown fails the test if the exit code is not 0 or the log shows a panic:
a clean shutdown is part of what every test checks.

Run everything (installs the clients first): `bash tools/test.sh`. Just
this suite, after `cargo build --release -p spindle-tools`:
`target/interop-venv/bin/pytest -q tools/interop` (SPINDLE_BIN overrides
the binary; SPINDLE_LOG the broker's log filter).
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from spindle_broker import SPINDLE, Broker  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _binary_exists():
    if not SPINDLE.exists():
        pytest.exit(f"{SPINDLE} is missing: run `cargo build --release -p spindle-tools` first", returncode=2)


def _journal_data_dir(path):
    """The data directory an ack journal names in its header (see
    engine/src/journal.rs): its length at byte 32, the path from byte 64."""
    with open(path, "rb") as f:
        head = f.read(4096)
    n = int.from_bytes(head[32:36], "little")
    return head[64:64 + n].decode(errors="replace")


@pytest.fixture(scope="session", autouse=True)
def _remove_test_ack_journals(tmp_path_factory):
    """Brokers killed with -9 leave their ack journals in /dev/shm (16 MiB
    per core), and a broker removes another data directory's journal only
    if it is empty. The tests' data directories are gone for good at the
    end of the session, so their journals go too."""
    yield
    base = str(tmp_path_factory.getbasetemp())
    for p in Path("/dev/shm").glob("spindle-ack-*.journal"):
        try:
            if _journal_data_dir(p).startswith(base):
                p.unlink()
        except OSError:
            pass


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """A broker shared by the tests of one module."""
    b = Broker(tmp_path_factory.mktemp("broker")).start()
    yield b
    b.stop()


@pytest.fixture
def broker_factory(tmp_path):
    """Makes brokers with extra flags; each is stopped (and checked) at teardown."""
    made = []

    def make(*extra_args, start=True):
        b = Broker(tmp_path / f"b{len(made)}", extra_args)
        b.root.mkdir()
        made.append(b)
        return b.start() if start else b

    yield make
    for b in made:
        b.stop()

