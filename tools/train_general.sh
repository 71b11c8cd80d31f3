#!/bin/sh
# Trains the general-domain en-de and zh-en models of issue 14 (captions + everyday + news):
#
#   sh tools/train_general.sh prepare     # data splits and vocabularies under work/ (minutes)
#   sh tools/train_general.sh en-de       # train (resumable: run again to continue from work/en-de-general/last.pt)
#   sh tools/train_general.sh zh-en
#   /usr/bin/python3 tools/select_checkpoints.py en-de   # choose on dev which epochs to average, export
#
# Each training run uses one thread with bf16 autocast (THREADS=2 in the environment gives it both cores). On
# the 2-core AMD EPYC, en-de (6+3 layers) trained at 1,717-1,796 target tokens/s on one thread alone, 2,640-2,716
# on two threads alone, and 1,300-1,680 on one thread beside the zh-en run: two models train side by side, one
# core each; a model that trains alone takes both threads.
set -eu
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
DATA=work/general-data
# The training options of each pair; export uses the same ones to rebuild the model's configuration.
options() {
  case "$1" in
  en-de)
    echo --workdir work/en-de-general \
      --train-tsv $DATA/en-de/train.tsv --valid-tsv $DATA/en-de/dev.tsv --joint-vocab 16000 \
      --d-model 256 --heads 4 --d-ff 1024 --layers 6 --decoder-layers 3 --norm pre --dropout 0.2 \
      --lr 1e-3 --warmup 1000 --max-tokens 4096 --epochs 60 --save-minutes 10 --average 60 \
      --bleu-sentences 600 --threads ${THREADS:-1} --bf16
    ;;
  zh-en)
    echo --workdir work/zh-en-general \
      --train-tsv $DATA/zh-en/train.tsv --valid-tsv $DATA/zh-en/dev.tsv --src-vocab 8000 --tgt-vocab 8000 \
      --src-coverage 0.9995 --d-model 256 --heads 4 --d-ff 1024 --layers 6 --decoder-layers 3 --norm pre \
      --dropout 0.2 --lr 1e-3 --warmup 1000 --max-tokens 4096 --epochs 100 --save-minutes 10 --average 100 \
      --bleu-sentences 600 --threads ${THREADS:-1} --bf16
    ;;
  *)
    echo "train_general.sh: unknown pair '$1' (en-de or zh-en)" >&2
    exit 1
    ;;
  esac
}

case "${1:-}" in
prepare)
  $PY tools/prepare_general.py ../shared/data $DATA
  # Vocabulary sizes chosen by tools/vocab_stats.py (pieces per word on the dev sets; see the model READMEs).
  $PY tools/vocab_stats.py --train $DATA/en-de/train.tsv --sizes 16000 --side joint \
    --eval $DATA/en-de/newstest2014.tsv $DATA/en-de/tatoeba-dev.tsv $DATA/en-de/multi30k-val.tsv
  $PY tools/vocab_stats.py --train $DATA/zh-en/train.tsv --sizes 8000 --side 0 --coverage 0.9995 --per-char \
    --eval $DATA/zh-en/newstest2019.tsv $DATA/zh-en/tatoeba-dev.tsv
  $PY tools/vocab_stats.py --train $DATA/zh-en/train.tsv --sizes 8000 --side 1 \
    --eval $DATA/zh-en/newstest2019.tsv $DATA/zh-en/tatoeba-dev.tsv
  mkdir -p work/en-de-general work/zh-en-general
  cp -n work/vocab-stats/spm-joint-16000.model work/en-de-general/spm.model
  cp -n work/vocab-stats/spm-0-8000.model work/zh-en-general/source.model
  cp -n work/vocab-stats/spm-1-8000.model work/zh-en-general/target.model
  ;;
en-de|zh-en)
  opts=$(options "$1")
  exec $PY tools/train.py $opts
  ;;
export)
  # sh tools/train_general.sh export PAIR CHECKPOINTS OUT_DIR [DTYPE]: average CHECKPOINTS (comma-separated
  # files of work/PAIR-general) into a fanyi model directory; tools/select_checkpoints.py calls this.
  [ $# -ge 4 ] || { echo "usage: sh tools/train_general.sh export en-de|zh-en CHECKPOINTS OUT_DIR [f32|f16]" >&2; exit 1; }
  opts=$(options "$2")
  exec $PY tools/train.py $opts --export-only --export-checkpoints "$3" --export "$4" --dtype "${5:-f16}"
  ;;
*)
  echo "usage: sh tools/train_general.sh prepare|en-de|zh-en|export" >&2
  exit 1
  ;;
esac
