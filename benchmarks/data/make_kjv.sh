#!/usr/bin/env bash
# Rebuilds kjv.txt.xz, the corpus of benchmarks/loss_parity.py: the King James Version of
# the Bible (1611; its copyright has expired, as Debian's bible-kjv-text copyright file
# says), from Debian's bible-kjv-text package, printed by the package's own `bible` program.
# One verse a line, verse numbers dropped, a "Book N" line before each chapter. 4.15 MB of
# ASCII text, 0.9 MB compressed. Needs apt (Debian's registry) and xz; writes beside itself.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
apt-get download bible-kjv bible-kjv-text >/dev/null
for deb in *.deb; do dpkg-deb -x "$deb" root; done
root/usr/bin/bible -d root/usr/lib/bible.data -l 0 gen1:1-rev22:21 >raw.txt
python3 - <<'EOF'
import re
out = []
for line in open("raw.txt", encoding="utf-8"):
    line = line.rstrip("\n")
    verse = re.match(r"^\s+\d+ (.*)$", line)
    if verse:
        out.append(verse.group(1))
    elif line.strip():
        out.append("\n" + line.strip())  # a blank line, then the chapter's heading
open("kjv.txt", "w", encoding="utf-8").write("\n".join(out).lstrip() + "\n")
EOF
xz -9e -f kjv.txt
cp kjv.txt.xz "$HERE/kjv.txt.xz"
echo "wrote $HERE/kjv.txt.xz ($(stat -c %s "$HERE/kjv.txt.xz") bytes)"
