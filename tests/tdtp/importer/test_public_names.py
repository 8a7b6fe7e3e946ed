"""The importer package's public names load on first use: every name it lists resolves, and
taking the light ones (what ``tdtp copy`` and the lander protocol need) does not import the
engine (the point of loading them lazily: tdtp/importer/__init__.py)."""

from __future__ import annotations

import subprocess
import sys

import tdtp.importer as importer


def test_every_listed_name_is_loadable_and_listed_once() -> None:
    assert sorted(importer.__all__) == sorted(importer._NAMES)
    for name in importer.__all__:
        assert getattr(importer, name) is not None


def test_the_light_names_do_not_import_the_engine() -> None:
    code = (
        "import sys\n"
        "from tdtp.importer import ImportOptions, LANDER_READY, ExportLanding, JOB_ENV\n"
        "print(sorted(m for m in sys.modules if m.startswith('tdtp.importer.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "tdtp.importer.engine" not in out and "tdtp.importer.dispatch" not in out, out
