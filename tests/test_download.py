"""download.sh against a local HTTP server and a small archive laid out like the real one.

Nothing here reaches the real hosts: every run points CELEBA_URL at 127.0.0.1, or at a fake
gdown on PATH for the Google Drive branch.
"""
import hashlib
import http.server
import io
import os
import shutil
import subprocess
import threading
import time
import zipfile
from pathlib import Path

import pytest
from PIL import Image

import conftest
from conftest import ROOT

pytestmark = pytest.mark.slow  # every test here runs download.sh in a process of its own

SCRIPT = Path(ROOT) / "download.sh"
DRIVE_ID = "0B7EVK8r0v71pZjFTYXZWM3FlRnM"


def tiny_jpeg(i):
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (60 * i, 255 - 60 * i, 128)).save(buffer, "JPEG")
    return buffer.getvalue()


def make_zip(members, folder="img_align_celeba/"):
    buffer = io.BytesIO()
    # Stored, not deflated: a test below finds a member's bytes in the archive to damage them.
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(folder + name, data)
    return buffer.getvalue()


JPEGS = {f"{i:06d}.jpg": tiny_jpeg(i) for i in range(1, 4)}
ARCHIVE = make_zip(JPEGS)


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves server.payload at any path, honouring 'Range: bytes=N-' (what curl -C - sends)."""

    def do_GET(self):
        payload, wanted = self.server.payload, self.headers.get("Range")
        self.server.ranges.append(wanted)
        start = int(wanted.split("=")[1].split("-")[0]) if wanted and self.server.resumable else 0
        if start >= len(payload):
            self.send_response(416)
            self.end_headers()
            return
        body = payload[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.server.sent += len(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    httpd.payload, httpd.resumable, httpd.ranges, httpd.sent = ARCHIVE, True, [], 0
    httpd.url = f"http://127.0.0.1:{httpd.server_port}/img_align_celeba.zip"
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def data(tmp_path):
    return tmp_path / "data"


def run(tmp_path, *args, archive=ARCHIVE, script=SCRIPT, **env):
    """Runs download.sh in tmp_path with DATA_DIR=tmp_path/data; env values of None unset."""
    env = {"DATA_DIR": str(tmp_path / "data"), "CELEBA_MD5": hashlib.md5(archive).hexdigest(),
           "CELEBA_SIZE": str(len(archive)), **env}
    # A proxy in the caller's environment must not see requests meant for 127.0.0.1.
    full = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    full.update(env)
    full = {k: v for k, v in full.items() if v is not None}
    return subprocess.run([str(script), *args], env=full, cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)


def error_line(result):
    return conftest.error_line(result, "download.sh")


def unpacked(data):
    folder = data / "img_align_celeba"
    return {p.name: p.read_bytes() for p in folder.iterdir()} if folder.is_dir() else None


def test_help_prints_usage():
    result = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("usage: ./download.sh")
    assert "CELEBA_URL" in result.stdout and "00d2c5bc6d35e252742224ab0c1e8fcb" in result.stdout


def test_unknown_option_is_refused(tmp_path):
    assert "--nope" in error_line(run(tmp_path, "--nope"))


def test_downloads_checks_and_unpacks(tmp_path, data, server):
    result = run(tmp_path, CELEBA_URL=server.url)
    assert result.returncode == 0, result.stderr
    assert (data / "img_align_celeba.zip").read_bytes() == ARCHIVE
    assert unpacked(data) == JPEGS
    # Neither the .part nor the temporary unzip folder is left behind.
    assert sorted(os.listdir(data)) == ["img_align_celeba", "img_align_celeba.zip"]
    assert "3 images" in result.stdout


def test_data_dir_argument_wins_over_the_variable(tmp_path, server):
    result = run(tmp_path, "mine", CELEBA_URL=server.url)
    assert result.returncode == 0, result.stderr
    assert unpacked(tmp_path / "mine") == JPEGS and not (tmp_path / "data").exists()


def test_data_dir_defaults_to_data(tmp_path, data, server):
    result = run(tmp_path, CELEBA_URL=server.url, DATA_DIR=None)
    assert result.returncode == 0, result.stderr
    assert unpacked(data) == JPEGS


def test_second_run_fetches_nothing(tmp_path, data, server):
    assert run(tmp_path, CELEBA_URL=server.url).returncode == 0
    assert len(server.ranges) == 1
    result = run(tmp_path, CELEBA_URL=server.url)
    assert result.returncode == 0 and "already there" in result.stdout
    # Without the folder, the archive already there is checked and unpacked, not fetched again.
    shutil.rmtree(data / "img_align_celeba")
    result = run(tmp_path, CELEBA_URL=server.url)
    assert result.returncode == 0, result.stderr
    assert unpacked(data) == JPEGS and len(server.ranges) == 1


def test_resumes_a_partial_download(tmp_path, data, server):
    data.mkdir()
    half = len(ARCHIVE) // 2
    (data / "img_align_celeba.zip.part").write_bytes(ARCHIVE[:half])
    result = run(tmp_path, CELEBA_URL=server.url)
    assert result.returncode == 0, result.stderr
    assert server.ranges == [f"bytes={half}-"] and server.sent == len(ARCHIVE) - half
    assert (data / "img_align_celeba.zip").read_bytes() == ARCHIVE
    assert unpacked(data) == JPEGS


def test_server_that_cannot_resume_is_explained(tmp_path, data, server):
    server.resumable = False  # answers 200 and the whole file to a Range request
    data.mkdir()
    part = data / "img_align_celeba.zip.part"
    part.write_bytes(ARCHIVE[:100])
    line = error_line(run(tmp_path, CELEBA_URL=server.url))
    assert "cannot resume" in line and f"delete {part}" in line
    assert part.read_bytes() == ARCHIVE[:100] and unpacked(data) is None


def test_wrong_checksum_is_refused(tmp_path, data, server):
    data.mkdir()
    (data / "notes.txt").write_text("the user's")
    line = error_line(run(tmp_path, CELEBA_URL=server.url, CELEBA_MD5="0" * 32))
    assert "md5" in line and "0" * 32 in line and "delete" in line
    # Nothing got the archive's name and nothing was unpacked; the download is kept for a look.
    assert sorted(os.listdir(data)) == ["img_align_celeba.zip.part", "notes.txt"]
    assert (data / "notes.txt").read_text() == "the user's"
    # A complete .part is checked again, not fetched again.
    error_line(run(tmp_path, CELEBA_URL=server.url, CELEBA_MD5="0" * 32))
    assert len(server.ranges) == 1


def test_wrong_size_is_refused(tmp_path, data, server):
    server.payload = b"<html>over quota</html>"
    line = error_line(run(tmp_path, CELEBA_URL=server.url))
    assert f"not {len(ARCHIVE)}" in line
    assert not (data / "img_align_celeba.zip").exists() and unpacked(data) is None


def test_damaged_archive_of_the_user_is_kept(tmp_path, data, server):
    data.mkdir()
    damaged = bytes(len(ARCHIVE))  # the right size, the wrong bytes
    (data / "img_align_celeba.zip").write_bytes(damaged)
    line = error_line(run(tmp_path, CELEBA_URL=server.url))
    assert "img_align_celeba.zip is not the expected archive" in line
    assert (data / "img_align_celeba.zip").read_bytes() == damaged
    assert unpacked(data) is None and server.ranges == []


def test_failed_unpack_leaves_no_folder(tmp_path, data, server):
    # Damage the last member only: unzip writes the first ones, then fails on its CRC.
    last = list(JPEGS.values())[-1]
    at = ARCHIVE.index(last) + len(last) // 2
    server.payload = ARCHIVE[:at] + bytes([ARCHIVE[at] ^ 0xFF]) + ARCHIVE[at + 1:]
    line = error_line(run(tmp_path, CELEBA_URL=server.url, archive=server.payload))
    assert "unzip could not unpack" in line
    assert os.listdir(data) == ["img_align_celeba.zip"]  # no final folder, no temporary one


def test_archive_without_the_folder_is_refused(tmp_path, data, server):
    server.payload = make_zip(JPEGS, folder="")
    line = error_line(run(tmp_path, CELEBA_URL=server.url, archive=server.payload))
    assert "no img_align_celeba/ folder" in line
    assert os.listdir(data) == ["img_align_celeba.zip"]


def test_unreachable_url_fails_fast(tmp_path, data):
    start = time.monotonic()
    line = error_line(run(tmp_path, CELEBA_URL="http://127.0.0.1:1/img_align_celeba.zip"))
    assert time.monotonic() - start < 20
    assert "127.0.0.1:1" in line and "cannot connect" in line
    assert not (data / "img_align_celeba.zip").exists() and unpacked(data) is None


PATH_WITHOUT_GDOWN = "/usr/bin:/bin"  # the tools the script needs, without a venv's or user's gdown


def script_alone(tmp_path):
    """A copy of download.sh in a folder of its own: no project .venv beside it."""
    (tmp_path / "project").mkdir()
    return Path(shutil.copy(SCRIPT, tmp_path / "project" / "download.sh"))


def test_google_drive_needs_gdown(tmp_path):
    if shutil.which("gdown", path=PATH_WITHOUT_GDOWN):
        pytest.skip("gdown is installed system-wide")
    line = error_line(run(tmp_path, CELEBA_URL=None, PATH=PATH_WITHOUT_GDOWN,
                          script=script_alone(tmp_path)))
    assert "pip install gdown" in line and ".venv" in line


def test_google_drive_finds_the_gdown_of_the_projects_venv(tmp_path, data):
    """The quick start installs gdown into .venv and a user need not activate it."""
    if shutil.which("gdown", path=PATH_WITHOUT_GDOWN):
        pytest.skip("gdown is installed system-wide")
    script = script_alone(tmp_path)
    fake_gdown_at(tmp_path / "project" / ".venv" / "bin")
    (tmp_path / "served.zip").write_bytes(ARCHIVE)
    result = run(tmp_path, CELEBA_URL=None, PATH=PATH_WITHOUT_GDOWN, script=script,
                 FAKE_ARCHIVE=str(tmp_path / "served.zip"), GDOWN_LOG=str(tmp_path / "gdown.log"))
    assert result.returncode == 0, result.stderr
    assert DRIVE_ID in (tmp_path / "gdown.log").read_text() and unpacked(data) == JPEGS


def fake_gdown_at(bin_dir):
    """A gdown that logs its arguments to $GDOWN_LOG and 'downloads' $FAKE_ARCHIVE, if set."""
    bin_dir.mkdir(parents=True)
    gdown = bin_dir / "gdown"
    gdown.write_text('#!/usr/bin/env bash\n'
                     'echo "$*" >>"$GDOWN_LOG"\n'
                     'while [ $# -gt 0 ]; do\n'
                     '  case $1 in -O | --output) out=$2; shift ;; esac\n'
                     '  shift\n'
                     'done\n'
                     'if [ -n "${GDOWN_FAILS:-}" ]; then\n'
                     '  printf "Error:\\n\\n\\t%s\\n\\nTo report issues...\\n" "$GDOWN_FAILS" >&2\n'
                     '  exit 1\n'
                     'fi\n'
                     'if [ -n "${FAKE_ARCHIVE:-}" ]; then cp "$FAKE_ARCHIVE" "$out"; fi\n')
    gdown.chmod(0o755)


@pytest.fixture
def fake_gdown(tmp_path):
    """The fake gdown, on PATH."""
    bin_dir = tmp_path / "bin"
    fake_gdown_at(bin_dir)
    (tmp_path / "served.zip").write_bytes(ARCHIVE)
    return dict(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", GDOWN_LOG=str(tmp_path / "gdown.log"))


def test_google_drive_goes_through_gdown(tmp_path, data, fake_gdown):
    result = run(tmp_path, CELEBA_URL=None, FAKE_ARCHIVE=str(tmp_path / "served.zip"), **fake_gdown)
    assert result.returncode == 0, result.stderr
    call = (tmp_path / "gdown.log").read_text()
    assert DRIVE_ID in call and "--continue" in call
    assert unpacked(data) == JPEGS


def test_google_drive_out_of_reach_is_one_line_that_says_so(tmp_path, data, fake_gdown):
    """What gdown prints, and its exit status, when the machine has no network."""
    line = error_line(run(tmp_path, CELEBA_URL=None, GDOWN_FAILS="Failed to resolve "
                          "'drive.google.com' ([Errno -2] Name or service not known)", **fake_gdown))
    assert "cannot reach Google Drive" in line and "no network?" in line
    assert not data.exists()  # the data folder this run made goes with it


def test_google_drive_refusal_is_explained(tmp_path, data, fake_gdown):
    # Older gdown versions print Drive's "over quota" page and still exit 0, without a file.
    line = error_line(run(tmp_path, CELEBA_URL=None, **fake_gdown))
    assert "gdown got no file" in line and "by hand" in line
    assert unpacked(data) is None
