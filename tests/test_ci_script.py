""".ci/run on a machine without Graphviz or apt-get (macOS) says how to install Graphviz, in one line."""

import os
import shutil
import subprocess

from tests.conftest import REPO_ROOT


def test_without_dot_or_apt_get_it_says_how_to_install_graphviz_and_stops(tmp_path):
    bin_dir = tmp_path / "bin"          # a PATH with the basics the script uses, but no dot and no apt-get
    bin_dir.mkdir()
    for tool in ("dirname", "id"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    result = subprocess.run([shutil.which("bash"), os.path.join(REPO_ROOT, ".ci", "run")],
                            env={"PATH": str(bin_dir)}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert "brew install graphviz" in line and "apt-get: command not found" not in line
