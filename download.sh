#!/usr/bin/env bash
# Fetches CelebA's aligned and cropped faces (img_align_celeba.zip: 202,599 JPEGs, 1.4 GB)
# and unpacks them to DATA_DIR/img_align_celeba/, the input of prepro.py.
#
# Safe to stop and run again at any point: a finished step is not repeated, a cut download
# resumes, and nothing gets its final name before it has been checked.
set -euo pipefail

# The official copy, linked from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html.
DRIVE_URL="https://drive.google.com/uc?id=0B7EVK8r0v71pZjFTYXZWM3FlRnM"
OFFICIAL_MD5=00d2c5bc6d35e252742224ab0c1e8fcb
OFFICIAL_SIZE=1443490838

usage() {
  cat <<EOF
usage: ./download.sh [DATA_DIR]

Downloads img_align_celeba.zip (1.4 GB) into DATA_DIR (default: data), checks it, and
unpacks it to DATA_DIR/img_align_celeba/. Run it again to resume a cut download.

Environment, to use a mirror (or, in the tests, a small archive):
  DATA_DIR     where the files go; the argument wins         [data]
  CELEBA_URL   where the zip comes from                      [$DRIVE_URL]
               (Google Drive needs gdown, from PATH or the project's .venv; any other URL
               uses curl)
  CELEBA_MD5   md5 the zip must have                         [$OFFICIAL_MD5]
  CELEBA_SIZE  size in bytes the zip must have               [$OFFICIAL_SIZE]
EOF
}

die() {
  # A data folder this run made and left empty goes too: a failed first try leaves nothing.
  if [ "${MADE_DATA_DIR:-}" = 1 ]; then rmdir "$DATA_DIR" 2>/dev/null || true; fi
  echo "download.sh: error: $*" >&2
  exit 1
}
say() { echo "download.sh: $*"; }

case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  -*) die "unknown option $1: see ./download.sh --help" ;;
esac
[ $# -le 1 ] || die "expected at most one argument, DATA_DIR: see ./download.sh --help"

HERE=$(cd "$(dirname "$0")" && pwd)
DATA_DIR=${1:-${DATA_DIR:-data}}
CELEBA_URL=${CELEBA_URL:-$DRIVE_URL}
CELEBA_MD5=$(echo "${CELEBA_MD5:-$OFFICIAL_MD5}" | tr 'A-F' 'a-f')
CELEBA_SIZE=${CELEBA_SIZE:-$OFFICIAL_SIZE}
[[ $CELEBA_MD5 =~ ^[0-9a-f]{32}$ ]] || die "CELEBA_MD5 must be 32 hex digits, not '$CELEBA_MD5': fix it and run again"
[[ $CELEBA_SIZE =~ ^[0-9]+$ ]] || die "CELEBA_SIZE must be a number of bytes, not '$CELEBA_SIZE': fix it and run again"

ZIP=$DATA_DIR/img_align_celeba.zip
PART=$ZIP.part  # the download until its checksum passes
IMAGES=$DATA_DIR/img_align_celeba

size_of() { wc -c <"$1" | tr -d ' '; }

md5_of() {
  if command -v md5sum >/dev/null; then
    md5sum "$1" | cut -d ' ' -f 1
  else
    md5 -q "$1"  # macOS
  fi
}

# Prints why $1 is not the expected archive; prints nothing when it is. The size goes first:
# it is instant, and a wrong one (say, an HTML error page) makes a clearer message.
mismatch() {
  local size md5
  size=$(size_of "$1")
  if [ "$size" != "$CELEBA_SIZE" ]; then
    echo "it has $size bytes, not $CELEBA_SIZE"
    return
  fi
  md5=$(md5_of "$1")
  [ "$md5" = "$CELEBA_MD5" ] || echo "its md5 is $md5, not $CELEBA_MD5"
}

fetch_with_curl() {
  local progress=--silent status=0 reason advice
  if [ -t 2 ]; then progress=--progress-bar; fi
  # --continue-at - resumes from the end of $PART. The timeouts make a dead network fail
  # at once and a stalled transfer (under 1 kB/s for a minute) fail instead of hanging.
  curl --fail --location --connect-timeout 15 --speed-limit 1024 --speed-time 60 \
    --continue-at - --output "$PART" "$progress" "$CELEBA_URL" || status=$?
  if [ "$status" -eq 0 ]; then return 0; fi
  advice="check the network (or set CELEBA_URL to a mirror) and run again (a partial download resumes)"
  case $status in
    6) reason="host not found" ;;
    7) reason="cannot connect" ;;
    22) reason="the server answered with an HTTP error" ;;
    28) reason="timed out" ;;
    33)
      reason="the server cannot resume a download"
      advice="delete $PART and run again to start over"
      ;;
    *) reason="curl exit status $status" ;;
  esac
  die "downloading $CELEBA_URL failed ($reason): $advice"
}

# Google Drive answers a large file with a "cannot scan for viruses" page and a confirm
# token; gdown knows the current form of that dance, and --continue resumes its own
# temporary file (img_align_celeba.zip.partXXXXXXXX) after a cut.
# gdown comes from PATH, else from the .venv beside this script, where README's quick start
# installs the requirements (so it is found without activating the environment).
fetch_from_drive() {
  local gdown
  gdown=$(command -v gdown || true)
  if [ -z "$gdown" ] && [ -x "$HERE/.venv/bin/gdown" ]; then gdown=$HERE/.venv/bin/gdown; fi
  [ -n "$gdown" ] ||
    die "downloading from Google Drive needs gdown, which is not on PATH nor in $HERE/.venv: pip install gdown (or the quick start's pip install -r requirements.txt), or set CELEBA_URL to a plain HTTP(S) mirror, then run again"
  local by_hand="download img_align_celeba.zip by hand from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html into $DATA_DIR/ and run again"
  # gdown's messages go to a log (and, on a terminal, to the screen too, for its progress bar),
  # so that a failure ends in one line that says what went wrong.
  local log status=0
  log=$(mktemp)
  if [ -t 2 ]; then
    "$gdown" --continue --output "$PART" "$CELEBA_URL" 2> >(tee "$log" >&2) || status=$?
  else
    "$gdown" --continue --output "$PART" "$CELEBA_URL" 2>"$log" || status=$?
  fi
  if [ "$status" -ne 0 ]; then
    if grep -qiE "resolve|NameResolution|Max retries|Connection(Error| refused)|unreachable" "$log"; then
      rm -f "$log"
      die "cannot reach Google Drive for $CELEBA_URL (no network?): check the network and run again, or $by_hand"
    fi
    rm -f "$log"
    die "gdown could not fetch $CELEBA_URL (Drive often refuses this file for a day when it is over quota): try again later, or $by_hand"
  fi
  rm -f "$log"
  # Older gdown versions print an error and still exit 0.
  [ -f "$PART" ] || die "gdown got no file from $CELEBA_URL (over quota?): try again later, or $by_hand"
}

# Leaves a checked archive at $ZIP.
download() {
  local have=0 why
  if [ -f "$PART" ]; then have=$(size_of "$PART"); fi
  if [ "$have" -gt "$CELEBA_SIZE" ]; then
    die "$PART is larger than the archive ($have > $CELEBA_SIZE bytes): delete it and run again"
  fi
  if [ "$have" -lt "$CELEBA_SIZE" ]; then
    say "downloading $CELEBA_URL to $ZIP"
    case $CELEBA_URL in
      https://drive.google.com/* | https://drive.usercontent.google.com/*) fetch_from_drive ;;
      *) fetch_with_curl ;;
    esac
  fi
  say "checking $PART"
  why=$(mismatch "$PART")
  [ -z "$why" ] || die "the download $PART is not the expected archive ($why): delete it and run again, or check CELEBA_URL and CELEBA_MD5"
  mv "$PART" "$ZIP"
}

# Unzips into a temporary folder beside the final one, then renames it: a rename within a
# folder is atomic, so $IMAGES is either complete or absent, even if this is killed.
unpack() {
  local out
  say "unpacking $ZIP"
  rm -rf "$DATA_DIR"/.img_align_celeba.unzip.*  # left behind by an unpack that was killed
  TMP=$(mktemp -d "$DATA_DIR/.img_align_celeba.unzip.XXXXXX")
  trap 'rm -rf "$TMP"' EXIT
  out=$(unzip -q "$ZIP" -d "$TMP" 2>&1) ||
    die "unzip could not unpack $ZIP ($(echo "$out" | tail -n 1 | sed 's/^ *//')): free some disk space, or delete $ZIP to fetch it again, and run again"
  [ -d "$TMP/img_align_celeba" ] ||
    die "$ZIP holds no img_align_celeba/ folder: delete it and run again, or check CELEBA_URL"
  mv "$TMP/img_align_celeba" "$IMAGES"
}

if [ -d "$IMAGES" ]; then
  say "$IMAGES/ is already there: nothing to do (delete it to unpack again)"
  exit 0
fi
command -v unzip >/dev/null || die "unzip is missing: install it (e.g. sudo apt-get install unzip) and run again"
if [ ! -d "$DATA_DIR" ]; then MADE_DATA_DIR=1; fi
mkdir -p "$DATA_DIR"

if [ -f "$ZIP" ]; then
  say "checking $ZIP"
  why=$(mismatch "$ZIP")
  [ -z "$why" ] || die "$ZIP is not the expected archive ($why): move it away or delete it, then run again"
else
  download
fi
unpack
say "done: $(find "$IMAGES" -name '*.jpg' | wc -l | tr -d ' ') images in $IMAGES/ (you may delete $ZIP now); next: python prepro.py"
