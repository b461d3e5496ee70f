#!/usr/bin/env bash
# One call on a GPU machine with no network (at most 9 minutes on one H100/H200), after
# `bash benchmarks/prepare_gpu_check.sh` here (it fills .whl/ and .devdata/; carry both):
#   1. installs the carried wheels (.whl/: hydra-core, omegaconf, antlr4) into /tmp/site;
#   2. builds CIFAR-10 from the carried JPEG copy (.devdata/) into data/;
#   3. runs the throughput benchmark (experiment=resnet18_sgd: ResNet-18, batch 512, bf16): trainer.fit,
#      bare step, both torchvision rows, augmentation share and ops per view (eager and compiled);
#   4. runs the sync-debug check (default config, ResNet-18, bf16, 30 steps);
#   5. pretrains ResNet-18 with $EXPERIMENT (default resnet18_sgd) for the epochs that fit TRAIN_S
#      seconds (about 5 minutes; computed from the benchmark's trainer.fit s/step, overheads allowed
#      for; at most MAX_EPOCHS, and warm-up + cosine follow trainer.max_epochs), with the kNN monitor
#      at the end;
#   6. probes it (train_linear.py ckpt=...), and a random encoder if time is left before DEADLINE_S;
#   7. prints ONE table; $OUT holds gpu_check.log, gpu_check.json, ssl_metrics.csv and table.md.
# Device call:  run(command="bash benchmarks/gpu_check.sh", carry=[".whl", ".devdata"], timeout_s=600)
# CPU dry run (everything but the CUDA parts, small sizes):
#   DRY=1 ARCH=resnet_tiny WIDTH=8 BATCH=64 bash benchmarks/gpu_check.sh
# Another recipe's first epochs (step 5 only; the benchmark and sync check keep their settings), e.g. the
# W-MSE paper's Adam baseline (conf/experiment/resnet18_wmse_adam.yaml: batch 512 = BATCH's default):
#   run(command="EXPERIMENT=resnet18_wmse_adam bash benchmarks/gpu_check.sh", carry=[".whl", ".devdata"],
#       timeout_s=600)
# Its 1000-epoch schedule is compressed to the epochs that fit: warm-up a tenth of them (1-10 epochs, in
# place of the preset's 500 steps), cosine to the preset's final_lr_fraction over them.
# CPU dry run of it (pretraining needs data: a carried .devdata/ or DATA_ROOT=<a built CIFAR-10>):
#   DRY=1 ARCH=resnet_tiny WIDTH=8 BATCH=64 EXPERIMENT=resnet18_wmse_adam bash benchmarks/gpu_check.sh
# Knobs: EXPERIMENT (the pretraining recipe, e.g. resnet18_knn90) ARCH BATCH WIDTH TRAIN_S DEADLINE_S
# MAX_EPOCHS EPOCHS (fixed, no time-box) WORKERS DATA_ROOT OUT WORK DRY PYTHON.
set -uo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
DRY=${DRY:-0}
ARCH=${ARCH:-resnet18}; BATCH=${BATCH:-512}; WIDTH=${WIDTH:-}; EXPERIMENT=${EXPERIMENT:-resnet18_sgd}
OUT=${OUT:-/tmp/gpu_check_out}; WORK=${WORK:-/tmp/gpu_check_work}
if [ "$DRY" = 1 ]; then  # small and quick: exercises every stage on a CPU
  TRAIN_S=${TRAIN_S:-20}; DEADLINE_S=${DEADLINE_S:-900}; MAX_EPOCHS=${MAX_EPOCHS:-3}; WORKERS=${WORKERS:-2}
  DATA_ROOT=${DATA_ROOT:-$WORK/data}; SITE=${SITE:-$WORK/site}; LIMIT=${LIMIT:-10}; PROBE_RESERVE_S=30
  BENCH_ARGS="--warmup 2 --steps 4 --repeats 1 --baseline-steps 2"; SYNC_STEPS=6
  EXTRA_SSL="trainer.limit_train_batches=$LIMIT"; EXTRA_PROBE="probe.epochs=2"; FIXED_S=5
else
  TRAIN_S=${TRAIN_S:-300}; DEADLINE_S=${DEADLINE_S:-525}; MAX_EPOCHS=${MAX_EPOCHS:-100}; WORKERS=${WORKERS:-15}
  DATA_ROOT=${DATA_ROOT:-data}; SITE=${SITE:-/tmp/site}; LIMIT=; PROBE_RESERVE_S=${PROBE_RESERVE_S:-80}
  BENCH_ARGS="--warmup 20 --steps 100 --repeats 3 --baseline-steps 20 --compile-ops"; SYNC_STEPS=30
  EXTRA_SSL=""; EXTRA_PROBE=""; FIXED_S=${FIXED_S:-15}
fi
FORCE_EPOCHS=${EPOCHS:-}; unset EPOCHS  # EPOCHS=N skips the time-box and pretrains N epochs
rm -rf "$WORK"; mkdir -p "$OUT" "$WORK"
LOG="$OUT/gpu_check.log"; : >"$LOG"
elapsed() { echo $(( $(date +%s) - START )); }
stage() {  # stage NAME CMD...: CMD's output goes to the log; its exit status and seconds to steps.txt
  local name=$1 t0 rc; shift; t0=$(date +%s)
  echo "== $name ($(elapsed) s): $*" >>"$LOG"
  "$@" >>"$LOG" 2>&1; rc=$?
  echo "$name $rc $(( $(date +%s) - t0 ))" >>"$WORK/steps.txt"
  echo "$name: exit $rc in $(( $(date +%s) - t0 )) s (at $(elapsed) s)" | tee -a "$LOG"
  return $rc
}

# 1. wheels
if ls .whl/*.whl >/dev/null 2>&1; then
  stage install "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
    && export PYTHONPATH="$SITE:$PWD"
else
  echo "no .whl/ here: skipping the install (run benchmarks/prepare_gpu_check.sh and carry .whl)" | tee -a "$LOG"
  export PYTHONPATH="$PWD"
fi
INFO=$("$PY" -c "import torch, pytorch_lightning as pl, hydra; c = torch.cuda.is_available()
print('torch', torch.__version__, '| lightning', pl.__version__, '| hydra', hydra.__version__, '|', torch.cuda.get_device_name() if c else 'no GPU')
print(int(c))" 2>&1)
head -n -1 <<<"$INFO" | tee -a "$LOG"; CUDA=$(tail -n 1 <<<"$INFO")
TRAINER=""; [ "$CUDA" = 1 ] || TRAINER="trainer=cpu"  # the recipes choose trainer=gpu
MODEL="model=$ARCH ${WIDTH:+model.width=$WIDTH}"

# 2. data
if [ ! -d "$DATA_ROOT/cifar-10-batches-py" ] && [ -f .devdata/build_cifar10.py ]; then
  stage data "$PY" .devdata/build_cifar10.py "$DATA_ROOT" --jpeg
fi
HAVE_DATA=0; [ -d "$DATA_ROOT/cifar-10-batches-py" ] && HAVE_DATA=1
[ "$HAVE_DATA" = 1 ] || echo "no CIFAR-10 (no $DATA_ROOT/ and no .devdata/): random images, no training" | tee -a "$LOG"
DATA_ARGS=(); [ "$HAVE_DATA" = 1 ] && DATA_ARGS=(--data-root "$DATA_ROOT")

# 3. throughput benchmark, 4. sync check
stage benchmark "$PY" benchmarks/throughput.py --arch "$ARCH" ${WIDTH:+--width "$WIDTH"} --batch "$BATCH" \
  --workers "$WORKERS" $BENCH_ARGS ${DATA_ARGS[@]+"${DATA_ARGS[@]}"} --out "$WORK/throughput.json" experiment=resnet18_sgd $TRAINER
stage sync_check "$PY" benchmarks/sync_check.py --arch "$ARCH" ${WIDTH:+--width "$WIDTH"} --batch "$BATCH" --steps "$SYNC_STEPS" \
  ${DATA_ARGS[@]+"${DATA_ARGS[@]}"} --out "$WORK/sync.json" $TRAINER

# 5. time-boxed pretraining, 6. probes
if [ "$HAVE_DATA" = 1 ] && [ -f "$WORK/throughput.json" ]; then
  BUDGET=$(( DEADLINE_S - $(elapsed) - PROBE_RESERVE_S )); [ "$BUDGET" -lt "$TRAIN_S" ] || BUDGET=$TRAIN_S
  if [ -n "$FORCE_EPOCHS" ]; then EPOCHS=$FORCE_EPOCHS; S_EPOCH="?"; BUDGET="(EPOCHS given)"; else
  read -r EPOCHS S_EPOCH < <("$PY" benchmarks/gpu_check_report.py epochs "$WORK/throughput.json" --budget-s "$BUDGET" \
    --max-epochs "$MAX_EPOCHS" --fixed-s "$FIXED_S" ${LIMIT:+--limit "$LIMIT"} --plan-out "$WORK/plan.json"); fi
  if [ -z "${EPOCHS:-}" ]; then echo "no epoch plan (see the log): no training" | tee -a "$LOG"; EPOCHS=0; fi
fi
if [ "${EPOCHS:-0}" -gt 0 ]; then
  WARM=$(( EPOCHS / 10 )); [ "$WARM" -ge 1 ] || WARM=1; [ "$WARM" -le 10 ] || WARM=10
  echo "pretraining: $EPOCHS epochs (warm-up $WARM) of about $S_EPOCH s in a budget of $BUDGET s" | tee -a "$LOG"
  stage pretrain "$PY" train_ssl.py experiment="$EXPERIMENT" $MODEL data.batch_size="$BATCH" trainer.max_epochs="$EPOCHS" \
    scheduler.warmup_epochs="$WARM" trainer.check_val_every_n_epoch="$EPOCHS" checkpoint.every_n_epochs="$EPOCHS" \
    data.root="$DATA_ROOT" data.download=false trainer.enable_progress_bar=false hydra.run.dir="$WORK/ssl" $TRAINER $EXTRA_SSL
  if [ -f "$WORK/ssl/checkpoints/last.ckpt" ]; then
    PROBE_T0=$(date +%s)
    stage probe "$PY" train_linear.py ckpt="$WORK/ssl/checkpoints/last.ckpt" data.root="$DATA_ROOT" data.download=false \
      trainer.enable_progress_bar=false $TRAINER $EXTRA_PROBE
    PROBE_S=$(( $(date +%s) - PROBE_T0 ))
    if [ $(( $(elapsed) + PROBE_S + 10 )) -le "$DEADLINE_S" ]; then
      stage random_probe "$PY" train_linear.py $MODEL hydra.run.dir="$WORK/random" data.root="$DATA_ROOT" \
        data.download=false trainer.enable_progress_bar=false $TRAINER $EXTRA_PROBE
    else
      echo "random-encoder probe skipped: $PROBE_S s would pass the $DEADLINE_S s deadline" | tee -a "$LOG"
    fi
  fi
fi

# 7. the table
echo "total $(elapsed) s" | tee -a "$LOG"
"$PY" benchmarks/gpu_check_report.py report "$WORK" "$OUT" 2>&1 | tee -a "$LOG"
