"""python-escpos keeps its printer profiles as a pickle it writes in place. posd points it at a
private cache per Python environment, and lanes' processes starting together (the daemon, `posd
doctor`, `posd print-test`) never read a pickle another one is writing."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

IMPORT = ("import os, posd.drivers.escpos_lib as e; "
          "assert e.get_profile('TM-T88V') is not None; print(os.environ['ESCPOS_CAPABILITIES_PICKLE_DIR'])")


def start(cache: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("ESCPOS_CAPABILITIES_PICKLE_DIR", "CACHE_DIRECTORY")}
    return subprocess.Popen([sys.executable, "-c", IMPORT], env=env | {"XDG_CACHE_HOME": str(cache)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_processes_starting_together_all_load_the_printer_profiles(tmp_path):
    for round_ in range(3):  # a fresh cache each round: the first processes write the pickle
        cache = tmp_path / f"cache{round_}"
        procs = [start(cache) for _ in range(6)]
        outcomes = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
        for p in procs:
            p.stdout.close()
            p.stderr.close()
        assert all(code == 0 for code, _ in outcomes), [err[-400:] for code, err in outcomes if code]


def test_each_python_environment_has_its_own_pickle(tmp_path):
    """Another install's pickle, newer than this one's capabilities file, is never what this one reads."""
    other = tmp_path / "posd" / "escpos" / "0123456789abcdef"
    other.mkdir(parents=True, mode=0o700)
    (other / f"{sys.version.split()[0]}.capabilities.pickle").write_bytes(b"not a pickle")
    proc = start(tmp_path)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-400:]
    used = Path(out.strip())
    assert used == tmp_path / "posd" / "escpos" / hashlib.sha256(sys.prefix.encode()).hexdigest()[:16]
    assert oct(used.stat().st_mode & 0o777) == oct(0o700)


def test_a_cache_folder_inherited_from_another_users_posd_is_not_used(tmp_path):
    """`posd doctor` run as another user (setpriv, sudo -u) from a root posd's child inherits the
    variable naming root's cache: python-escpos could not write its pickle there and failed the import."""
    if os.geteuid() != 0:
        import pytest

        pytest.skip("needs root to run a process as nobody")
    theirs = tmp_path / "root-cache"
    theirs.mkdir(mode=0o700)
    tmp_path.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "CACHE_DIRECTORY"}
    env |= {"ESCPOS_CAPABILITIES_PICKLE_DIR": str(theirs), "XDG_CACHE_HOME": str(tmp_path / "nobody-cache")}
    done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", IMPORT],
                          env=env, capture_output=True, text=True, timeout=120, cwd="/")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-1500:]
    assert done.stdout.strip() != str(theirs) and not any(theirs.iterdir())
    assert not Path(done.stdout.strip()).exists()  # the process's own scratch folder went with it


def test_a_process_leaves_no_empty_folder_in_the_temp_folder(tmp_path):
    """python-escpos makes a temp folder at import whatever the variable says: every posd process
    (a `posd doctor` too) left an empty one behind in /tmp."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("ESCPOS_CAPABILITIES_PICKLE_DIR", "CACHE_DIRECTORY")}
    for _ in range(2):  # the first writes the pickle, the second reads it
        done = subprocess.run([sys.executable, "-c", IMPORT], env=env | {
            "XDG_CACHE_HOME": str(tmp_path / "cache"), "TMPDIR": str(temp)}, capture_output=True, text=True,
            timeout=120)
        assert done.returncode == 0, done.stderr[-400:]
    assert list(temp.iterdir()) == []
    assert [p.name for p in Path(done.stdout.strip()).iterdir() if p.name.startswith(".import-")] == []
