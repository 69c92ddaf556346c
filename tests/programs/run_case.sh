#!/usr/bin/env bash
# One test case of the programs diffuse-train and diffuse-sample (see CMakeLists.txt):
#
#   run_case.sh CASE WORK TRAIN SAMPLE TESTKIT [EVAL]
#
# (EVAL, diffuse-eval, for the eval_* cases.)
# WORK is shared by the cases: `setup` writes the data files into WORK/data, `train`
# trains edm-tiny for 3 steps into WORK/train; every other case works in WORK/CASE.
# Error cases check that the program exits non-zero and writes exactly one error line,
# "<program>: error: ...", that contains the expected text and is the last line of stderr.
set -euo pipefail

case_name=$1 work=$2 train=$3 sample=$4 testkit=$5 eval=${6:-}
data=$work/data ckpt=$work/train/checkpoint.safetensors weights=$work/train/model_ema.safetensors
dir=$work/$case_name
if [[ $case_name != setup && $case_name != train ]]; then
  rm -rf "$dir"
  mkdir -p "$dir"
fi

fail() {
  echo "FAIL ($case_name): $*" >&2
  for f in "$dir"/stderr "$dir"/stdout; do
    [[ -f $f ]] && { echo "--- $f:" >&2; cat "$f" >&2; }
  done
  exit 1
}

# expect_error TEXT PROGRAM ARGS...
expect_error() {
  local text=$1 prog=$2
  shift
  local name rc=0
  name=$(basename "$prog")
  "$@" >"$dir/stdout" 2>"$dir/stderr" || rc=$?
  ((rc != 0)) || fail "'$*' exited with status 0"
  local n
  n=$(grep -ci 'error' "$dir/stderr" || true)
  ((n == 1)) || fail "expected exactly one error line on stderr, found $n"
  local line
  line=$(grep -i 'error' "$dir/stderr")
  [[ $line == "$name: error: "* ]] || fail "the error line does not start with '$name: error: ': $line"
  [[ $line == *"$text"* ]] || fail "the error line does not contain '$text': $line"
  [[ $(tail -n 1 "$dir/stderr") == "$line" ]] || fail "the error line is not the last line of stderr"
  echo "ok (exit $rc): $line"
}

# expect_ok PROGRAM ARGS...: runs, fails the case on a non-zero exit status.
expect_ok() {
  local rc=0
  "$@" >"$dir/stdout" 2>"$dir/stderr" || rc=$?
  ((rc == 0)) || fail "'$*' exited with status $rc"
}

# need FILES...: each exists and is not empty.
need() {
  for f in "$@"; do [[ -s $f ]] || fail "missing output $f"; done
}

# The mean SSIM diffuse-sample reports on stderr.
mean_ssim() { sed -n 's/^mean SSIM \([-0-9.]*\) .*/\1/p' "$dir/stderr"; }

tiny=(--model edm-tiny)

# Open MPI's mpirun for two processes on one machine, each with one thread (--threads 1 in
# the cases); as root it needs --allow-run-as-root; no single-copy shared memory (containers).
mpirun=("${DIFFUSE_MPIEXEC:-mpirun}" --oversubscribe --bind-to none)
[[ $(id -u) == 0 ]] && mpirun+=(--allow-run-as-root)
export OMPI_MCA_btl_vader_single_copy_mechanism=none
mpi2=("${mpirun[@]}" -np 2)

# The losses of log.jsonl, one per line.
losses() { sed -n 's/.*"loss":\([-0-9.eE+]*\).*/\1/p' "$1"; }
# weights_close A B: every tensor of two checkpoints within 1e-5 of its largest magnitude
# (measured: 1e-6), but the attention's key bias (the middle third of qkv.bias): its
# gradient is zero in exact arithmetic (softmax ignores a constant), so its float value is
# rounding noise, and AdamW's g / sqrt(v) turns any noise into steps of lr, as in PyTorch.
weights_close() { "$testkit" tensors-close "$1" "$2" 1e-5 qkv.bias; }
# losses_close A B TOL: the same number of steps, each loss within TOL (relative).
losses_close() {
  paste <(losses "$1") <(losses "$2") | awk -v tol="$3" '
    { n++; d = $1 - $2; if (d < 0) d = -d; r = d / ($1 < 0 ? -$1 : $1); if (r > worst) worst = r }
    END { printf "losses: %d steps, largest relative difference %.3g\n", n, worst; exit !(n > 0 && worst <= tol) }'
}

case $case_name in
  # ---- fixtures ------------------------------------------------------------------------
  setup)
    rm -rf "$data"
    mkdir -p "$data/empty" "$data/init" "$data/big" "$data/mixed"
    "$testkit" idx "$data/train.idx" 16 28 28
    "$testkit" idx "$data/bad-magic.idx" 4 28 28 bad-magic
    "$testkit" idx "$data/truncated.idx" 4 28 28 truncated
    "$testkit" idx "$data/big.idx" 4 32 32
    "$testkit" labels "$data/train-labels.idx" 16 10
    "$testkit" labels "$data/labels-12.idx" 16 12
    "$testkit" labels "$data/labels-short.idx" 8 10
    for i in 0 1 2 3; do "$testkit" png "$data/init/in$i.png" 28 28 "$i"; done
    "$testkit" png "$data/big/big.png" 32 32 1
    "$testkit" png "$data/mixed/a.png" 28 28 1
    "$testkit" png "$data/mixed/b.png" 32 32 2
    echo "this is not a safetensors file, nor an image" >"$data/garbage.safetensors"
    cp "$data/garbage.safetensors" "$data/garbage.png"
    ;;
  train)
    rm -rf "$work/train"
    dir=$work/train
    mkdir -p "$dir"
    expect_ok "$train" --data "$data/train.idx" "${tiny[@]}" --steps 3 --batch 4 --out "$dir" --sample-every 0
    need "$ckpt" "$weights" "$dir/samples.png" "$dir/log.jsonl"
    [[ $(grep -c '"step":' "$dir/log.jsonl") == 3 ]] || fail "log.jsonl does not have 3 steps"
    "$testkit" json "$dir/log.jsonl" || fail "log.jsonl is not JSON lines"
    "$testkit" json "$ckpt" || fail "the checkpoint's header is not JSON"
    head -n 1 "$dir/stderr" | grep -q '^diffuse ' || fail "stderr does not start with the info line"
    ;;

  train_control_characters)  # a data path with a TAB and a byte that is not UTF-8 lands in the header as JSON
    cp "$data/train.idx" "$dir/$(printf 'ta\tb\xff').idx"
    expect_ok "$train" --data "$dir/$(printf 'ta\tb\xff').idx" "${tiny[@]}" --steps 1 --batch 4 --out "$dir/run" --sample-every 0
    "$testkit" json "$dir/run/checkpoint.safetensors" || fail "the checkpoint's header is not JSON"
    "$testkit" json "$dir/run/log.jsonl" || fail "log.jsonl is not JSON lines" ;;
  train_resume_plain_weights)  # a weights file where the checkpoint should be: refused, and left as it was
    mkdir -p "$dir/run"
    cp "$weights" "$dir/run/checkpoint.safetensors"
    expect_error "checkpoint.safetensors: not a diffuse training checkpoint" \
      "$train" --data "$data/train.idx" "${tiny[@]}" --batch 4 --steps 5 --out "$dir/run" --resume
    cmp -s "$weights" "$dir/run/checkpoint.safetensors" || fail "the file was changed"
    [[ ! -e $dir/run/log.jsonl ]] || fail "a log was started" ;;
  train_resume_keeps_hyperparameters)  # 3 steps, then --resume to 5 without the options: as 5 steps in one go
    run=(--data "$data/train.idx" "${tiny[@]}" --sample-every 0 --checkpoint-every 0)
    hyper=(--batch 4 --lr 0.002 --warmup 2 --ema-half-life 0.001 --ema-rampup 0)
    expect_ok "$train" "${run[@]}" "${hyper[@]}" --steps 3 --out "$dir/resumed"
    expect_ok "$train" "${run[@]}" --steps 5 --resume --out "$dir/resumed"
    grep -q 'overrides' "$dir/stderr" && fail "an option was said to override although none was given"
    expect_ok "$train" "${run[@]}" "${hyper[@]}" --steps 5 --out "$dir/straight"
    for f in checkpoint.safetensors model_ema.safetensors; do
      cmp -s "$dir/resumed/$f" "$dir/straight/$f" || fail "$f of the resumed run differs from the straight run's"
    done
    expect_ok "$train" "${run[@]}" --steps 6 --resume --lr 0.001 --out "$dir/resumed"
    grep -q -- "--lr 0.001 overrides the run's 0.002" "$dir/stderr" || fail "the override of --lr was not said"
    expect_error "--batch 8 differs from the run's batch 4" "$train" "${run[@]}" --steps 7 --resume --batch 8 --out "$dir/resumed"
    # The ramp-up changes the average: the same 5 steps with EDM's ramp-up give other EMA weights, same raw ones.
    expect_ok "$train" "${run[@]}" "${hyper[@]}" --ema-rampup 0.05 --steps 5 --out "$dir/rampup"
    cmp -s "$dir/rampup/model_ema.safetensors" "$dir/straight/model_ema.safetensors" &&
      fail "--ema-rampup 0 and 0.05 gave the same EMA weights"
    grep -q '"train.ema_rampup":"0"' "$dir/straight/checkpoint.safetensors" || fail "the checkpoint does not record --ema-rampup 0"
    ;;
  train_repeated_option)  # the last occurrence wins: cmake/setup.sh main passes its defaults first
    expect_ok "$train" --data "$data/train.idx" "${tiny[@]}" --steps 1 --batch 4 --out "$dir" --sample-every 0 --steps 2
    [[ $(grep -c '"step":' "$dir/log.jsonl") == 2 ]] || fail "the second --steps did not win"
    ;;

  # ---- diffuse-train under mpirun (data parallelism) --------------------------------------
  mpi_same_as_one_process)  # 2 processes (shares of 2 and 3 images) = 1 process, to float rounding; same bits twice
    run=(--data "$data/train.idx" --labels "$data/train-labels.idx" "${tiny[@]}" --batch 5 --steps 4 --threads 1
         --sample-every 2 --checkpoint-every 2 --xflip --lr 0.002 --warmup 1)
    expect_ok "$train" "${run[@]}" --out "$dir/one"
    expect_ok "${mpi2[@]}" "$train" "${run[@]}" --out "$dir/two"
    [[ $(grep -c '^data: ' "$dir/stderr") == 1 ]] || fail "not process 0 alone printed"
    grep -q '"processes":2' "$dir/two/log.jsonl" || fail "log.jsonl does not say 2 processes"
    grep -q '"reduce_seconds":' "$dir/two/log.jsonl" || fail "log.jsonl does not time the sums"
    need "$dir/two/checkpoint.safetensors" "$dir/two/samples.png" "$dir/two/samples-000002.png"
    losses_close "$dir/one/log.jsonl" "$dir/two/log.jsonl" 1e-5 || fail "the losses differ"
    weights_close "$dir/one/checkpoint.safetensors" "$dir/two/checkpoint.safetensors" || fail "the weights differ"
    # Again, process 1 told to write elsewhere: it writes nothing.
    expect_ok "${mpirun[@]}" -np 1 "$train" "${run[@]}" --out "$dir/two-again" : \
      -np 1 "$train" "${run[@]}" --out "$dir/process-1"
    [[ ! -e $dir/process-1 ]] || fail "process 1 wrote into its --out"
    for f in checkpoint.safetensors model_ema.safetensors; do
      cmp -s "$dir/two/$f" "$dir/two-again/$f" || fail "two runs on 2 processes gave different $f"
    done ;;
  mpi_resume_other_count)  # 2 steps on 2 processes, 2 more on 1 (and the other way): as 4 steps on 1
    run=(--data "$data/train.idx" "${tiny[@]}" --batch 4 --threads 1 --sample-every 0 --checkpoint-every 0 --lr 0.002)
    expect_ok "$train" "${run[@]}" --steps 4 --out "$dir/straight"
    expect_ok "${mpi2[@]}" "$train" "${run[@]}" --steps 2 --out "$dir/two-one"
    expect_ok "$train" "${run[@]}" --steps 4 --resume --out "$dir/two-one"
    expect_ok "$train" "${run[@]}" --steps 2 --out "$dir/one-two"
    expect_ok "${mpi2[@]}" "$train" "${run[@]}" --steps 4 --resume --out "$dir/one-two"
    grep -q 'resumed from .* at step 2' "$dir/stderr" || fail "the run on 2 processes did not resume"
    for r in two-one one-two; do
      losses_close "$dir/straight/log.jsonl" "$dir/$r/log.jsonl" 1e-5 || fail "$r: the losses differ"
      weights_close "$dir/straight/checkpoint.safetensors" "$dir/$r/checkpoint.safetensors" || fail "$r: the weights differ"
    done ;;
  mpi_mismatch)  # processes given different options: an error, a non-zero exit, the checkpoint kept
    run=(--data "$data/train.idx" "${tiny[@]}" --batch 4 --threads 1 --sample-every 0 --checkpoint-every 0)
    expect_ok "$train" "${run[@]}" --steps 2 --out "$dir/run"
    cp "$dir/run/checkpoint.safetensors" "$dir/saved.safetensors"
    rc=0
    "${mpirun[@]}" -np 1 "$train" "${run[@]}" --steps 4 --resume --out "$dir/run" --lr 0.002 : \
      -np 1 "$train" "${run[@]}" --steps 4 --resume --out "$dir/run" --lr 0.003 >"$dir/stdout" 2>"$dir/stderr" || rc=$?
    ((rc != 0)) || fail "processes with different options exited with status 0"
    grep -q '^diffuse-train: error: the 2 processes of this run differ in their options' "$dir/stderr" ||
      fail "process 0 did not say that the processes differ"
    cmp -s "$dir/saved.safetensors" "$dir/run/checkpoint.safetensors" || fail "the checkpoint was changed"
    echo "ok (exit $rc)" ;;
  mpi_process_dies)  # process 1 is killed mid-run: mpirun ends the job, non-zero; the last checkpoint loads
    run=(--data "$data/train.idx" "${tiny[@]}" --batch 4 --threads 1 --sample-every 0 --checkpoint-every 2
         --out "$dir/run")
    rc=0
    timeout 120 "${mpirun[@]}" -np 1 "$train" "${run[@]}" --steps 100000 : -np 1 bash -c \
      'ck=$1; shift; "$@" & p=$!; for _ in $(seq 600); do [[ -s $ck ]] && break; sleep 0.1; done; kill -9 $p; wait $p' \
      _ "$dir/run/checkpoint.safetensors" "$train" "${run[@]}" --steps 100000 >"$dir/stdout" 2>"$dir/stderr" || rc=$?
    ((rc != 0 && rc != 124)) || fail "the job exited with status $rc (124: it hung)"
    expect_ok "$sample" --checkpoint "$dir/run/checkpoint.safetensors" --count 1 --steps 2 --out "$dir/sampled"
    echo "ok (exit $rc)" ;;
  mpi_interrupt)  # SIGTERM to process 0: every process stops after the step, process 0 saves, exits 130 (mpirun: non-zero)
    run=(--data "$data/train.idx" "${tiny[@]}" --batch 4 --threads 1 --sample-every 0 --checkpoint-every 0
         --steps 100000 --out "$dir/run")
    "${mpirun[@]}" -np 1 "$train" "${run[@]}" --log-every 7 : -np 1 "$train" "${run[@]}" --log-every 8 \
      >"$dir/stdout" 2>"$dir/stderr" &
    job=$!
    for _ in $(seq 600); do
      [[ $(grep -c '"loss":' "$dir/run/log.jsonl" 2>/dev/null) -ge 2 ]] && break
      sleep 0.1
    done
    pkill -TERM -f -- "--log-every 7 .*$dir/run|$dir/run.* --log-every 7" || fail "process 0 was not found"
    rc=0
    wait $job || rc=$?
    ((rc != 0)) || fail "the job exited with status 0"
    grep -q '^interrupted after' "$dir/stderr" || fail "process 0 did not say it was interrupted"
    need "$dir/run/checkpoint.safetensors"
    echo "ok (exit $rc)" ;;
  mpi_process_fails)  # one process cannot read its data: the whole job ends with an error, no process waits
    run=("${tiny[@]}" --batch 4 --threads 1 --steps 2 --sample-every 0 --out "$dir/run")
    rc=0
    "${mpirun[@]}" -np 1 "$train" --data "$data/train.idx" "${run[@]}" : \
      -np 1 "$train" --data "$data/nope.idx" "${run[@]}" >"$dir/stdout" 2>"$dir/stderr" || rc=$?
    ((rc != 0)) || fail "the job exited with status 0"
    grep -q '^diffuse-train (process 1): error: .*nope.idx: cannot open' "$dir/stderr" ||
      fail "process 1's error was not reported"
    [[ ! -e $dir/run/checkpoint.safetensors ]] || fail "a checkpoint was written"
    echo "ok (exit $rc)" ;;

  # ---- diffuse-train: bad input --------------------------------------------------------
  train_missing_data) expect_error "nope.idx: cannot open" "$train" --data "$data/nope.idx" "${tiny[@]}" --out "$dir" ;;
  train_unreadable_data)  # a path through a file: cannot be opened, even by root
    expect_error "cannot open" "$train" --data "$data/train.idx/x.idx" "${tiny[@]}" --out "$dir" ;;
  train_bad_magic) expect_error "not an IDX file" "$train" --data "$data/bad-magic.idx" "${tiny[@]}" --out "$dir" ;;
  train_truncated) expect_error "truncated" "$train" --data "$data/truncated.idx" "${tiny[@]}" --out "$dir" ;;
  train_wrong_size_idx)
    expect_error "images are 32x32 but the model expects 28x28" "$train" --data "$data/big.idx" "${tiny[@]}" --out "$dir" ;;
  train_wrong_size_image)
    expect_error "b.png: image is 32x32 but the model takes 28x28" "$train" --data "$data/mixed" "${tiny[@]}" --out "$dir" ;;
  train_empty_folder) expect_error "no images" "$train" --data "$data/empty" "${tiny[@]}" --out "$dir" ;;
  train_other_config)  # resuming edm-tiny's checkpoint as edm-mnist-small
    cp "$ckpt" "$dir/checkpoint.safetensors"
    expect_error "checkpoint of model 'edm-tiny'" "$train" --data "$data/train.idx" --out "$dir" --resume ;;
  train_labels_out_of_range)
    expect_error "image 10 has label 10, but the model has 10 classes" \
      "$train" --data "$data/train.idx" --labels "$data/labels-12.idx" "${tiny[@]}" --batch 4 --out "$dir" ;;
  train_labels_count)
    expect_error "8 labels for 16 images" "$train" --data "$data/train.idx" --labels "$data/labels-short.idx" "${tiny[@]}" --out "$dir" ;;
  train_labels_with_folder)
    expect_error "--labels goes with an IDX image file" "$train" --data "$data/init" --labels "$data/train-labels.idx" "${tiny[@]}" --out "$dir" ;;
  train_label_dropout_without_labels)
    expect_error "--label-dropout goes with --labels" "$train" --data "$data/train.idx" --label-dropout 0.2 "${tiny[@]}" --out "$dir" ;;
  train_label_dropout_range)
    expect_error "--label-dropout" "$train" --data "$data/train.idx" --labels "$data/train-labels.idx" --label-dropout 1.5 "${tiny[@]}" --out "$dir" ;;
  train_option_ranges)  # every numeric option: finite, in its range, refused before any file is touched
    for bad in "--lr inf" "--lr nan" "--lr 1e39" "--lr 0" "--epochs nan" "--epochs inf" "--minutes inf" "--minutes -1" \
               "--ema-half-life inf" "--ema-rampup -0.1" "--ema-rampup nan" "--label-dropout nan" "--label-dropout 1.5" "--batch 1e9" "--batch 2.5" "--warmup -1" \
               "--steps 99999999999" "--threads 0" "--threads 100000" "--log-every 0" "--sample-every x" "--checkpoint-every -2"; do
      # shellcheck disable=SC2086
      expect_error "${bad%% *}: must be " "$train" --data "$data/train.idx" "${tiny[@]}" --out "$dir/run" $bad
      [[ ! -e $dir/run ]] || fail "$bad: the output folder was created"
    done ;;
  train_epochs_below_one_step)  # 16 images at batch 8: an epoch is 2 steps, 0.4 of it is none
    expect_error "--epochs 0.4 is less than one step: an epoch of the 16 images is 2 step(s) of 8; give --epochs 0.5 or more" \
      "$train" --data "$data/train.idx" "${tiny[@]}" --batch 8 --epochs 0.4 --out "$dir/run"
    [[ ! -e $dir/run/checkpoint.safetensors && ! -e $dir/run/log.jsonl ]] || fail "a checkpoint or log was written"
    expect_ok "$train" --data "$data/train.idx" "${tiny[@]}" --batch 8 --epochs 0.5 --sample-every 0 --out "$dir/half"
    [[ $(grep -c '"step":' "$dir/half/log.jsonl") == 1 ]] || fail "--epochs 0.5 did not run one step" ;;
  train_negative_steps) expect_error "--steps" "$train" --data "$data/train.idx" "${tiny[@]}" --steps -3 --out "$dir" ;;
  train_batch_zero) expect_error "--batch" "$train" --data "$data/train.idx" "${tiny[@]}" --batch 0 --out "$dir" ;;
  train_unknown_option) expect_error "--bogus" "$train" --bogus ;;

  # ---- diffuse-train: help, version, interruption --------------------------------------
  train_help_version)
    expect_ok "$train" --help
    grep -q -- '--data' "$dir/stdout" || fail "--help does not list --data"
    expect_ok "$train" --version
    grep -q '^diffuse ' "$dir/stdout" || fail "--version does not print the info line"
    expect_ok "$train" --info
    grep -q '^diffuse .*device' "$dir/stderr" || fail "--info does not print the info line"
    ;;
  train_kill_at_any_moment)  # SIGKILL at many moments (mid-step, mid-checkpoint): --resume always finds the
    # last complete checkpoint, and the run ends bit for bit as one that was never killed
    run=(--data "$data/train.idx" "${tiny[@]}" --batch 4 --steps 30 --sample-every 0 --checkpoint-every 1 --log-every 1)
    expect_ok "$train" "${run[@]}" --out "$dir/straight"
    kills=0
    for delay in 0.15 0.2 0.25 0.3 0.35 0.4 0.45 0.5 0.55 0.6 0.3 0.25; do
      resume=()
      [[ -e $dir/killed/checkpoint.safetensors ]] && resume=(--resume)
      "$train" "${run[@]}" "${resume[@]}" --out "$dir/killed" >"$dir/stdout" 2>"$dir/stderr" &
      pid=$!
      sleep "$delay"
      if kill -KILL "$pid" 2>/dev/null; then kills=$((kills + 1)); fi
      wait "$pid" 2>/dev/null || true
      if [[ -e $dir/killed/checkpoint.safetensors ]]; then  # whatever is there must load
        expect_ok "$sample" --checkpoint "$dir/killed/checkpoint.safetensors" "${tiny[@]}" --count 1 --steps 1 --out "$dir/probe"
      fi
    done
    ((kills >= 6)) || fail "only $kills of the runs were killed before they finished (the machine is too fast for the delays)"
    resume=()
    [[ -e $dir/killed/checkpoint.safetensors ]] && resume=(--resume)
    expect_ok "$train" "${run[@]}" "${resume[@]}" --out "$dir/killed"
    for f in checkpoint.safetensors model_ema.safetensors; do
      cmp -s "$dir/straight/$f" "$dir/killed/$f" || fail "$f after $kills kills differs from the run that was never killed"
    done
    echo "ok: $kills kills" ;;
  train_interrupt)  # SIGINT during a long run: exit 130 and a checkpoint that loads
    rc=0
    "$train" --data "$data/train.idx" "${tiny[@]}" --steps 1000000 --batch 4 --out "$dir" --sample-every 0 \
      --checkpoint-every 0 --log-every 1 >"$dir/stdout" 2>"$dir/stderr" &
    pid=$!
    for _ in $(seq 600); do  # until two steps are done (at most 60 s)
      [[ -f $dir/log.jsonl ]] && (($(grep -c '"step":' "$dir/log.jsonl") >= 2)) && break
      sleep 0.1
    done
    kill -INT "$pid"
    wait "$pid" || rc=$?
    ((rc == 130)) || fail "exit status $rc after SIGINT, expected 130"
    grep -q '^interrupted after' "$dir/stderr" || fail "no 'interrupted' line"
    need "$dir/checkpoint.safetensors" "$dir/model_ema.safetensors"
    expect_ok "$sample" --checkpoint "$dir/checkpoint.safetensors" "${tiny[@]}" --count 1 --steps 2 --out "$dir/samples"
    need "$dir/samples/image-0000.png"
    ;;

  # ---- diffuse-sample: bad input -------------------------------------------------------
  sample_no_checkpoint) expect_error "--checkpoint is required" "$sample" --out "$dir" ;;
  sample_missing_checkpoint)
    expect_error "nope.safetensors: no such file" "$sample" --checkpoint "$data/nope.safetensors" --out "$dir" ;;
  sample_unreadable_checkpoint)
    expect_error "garbage.safetensors" "$sample" --checkpoint "$data/garbage.safetensors" "${tiny[@]}" --out "$dir" ;;
  sample_folder_checkpoint) expect_error "is a folder" "$sample" --checkpoint "$data" "${tiny[@]}" --out "$dir" ;;
  sample_other_config)  # the checkpoint names its model; another --model is refused
    expect_error "holds model 'edm-tiny', but --model is 'edm-mnist-small'" \
      "$sample" --checkpoint "$ckpt" --model edm-mnist-small --out "$dir"
    expect_ok "$sample" --checkpoint "$ckpt" --count 1 --steps 2 --out "$dir/named"
    grep -q "^model edm-tiny: EMA weights" "$dir/stderr" || fail "the checkpoint's model was not used" ;;
  sample_other_config_weights)  # weights name their model too; unnamed ones meet the shape check
    expect_error "holds model 'edm-tiny', but --model is 'edm-mnist-small'" \
      "$sample" --checkpoint "$weights" --model edm-mnist-small --out "$dir"
    fixture=$(cd "$(dirname "$0")/../fixtures" && pwd)/edm_tiny_weights.safetensors
    expect_error "expected shape" "$sample" --checkpoint "$fixture" --model edm-mnist-small --out "$dir"
    expect_ok "$sample" --checkpoint "$weights" --count 1 --steps 2 --out "$dir/named"
    grep -q "^model edm-tiny: weights of" "$dir/stderr" || fail "the weights' model was not used" ;;
  sample_weights_by_shape)  # weights that do not name their model: the configuration with their shapes
    fixture=$(cd "$(dirname "$0")/../fixtures" && pwd)/edm_tiny_weights.safetensors
    expect_ok "$sample" --checkpoint "$fixture" --count 1 --steps 2 --out "$dir"
    grep -q "^model edm-tiny: the configuration whose shapes the weights have" "$dir/stderr" ||
      fail "edm-tiny was not recognised by its shapes"
    ;;
  sample_no_ema_weights)
    expect_error "--no-ema applies to training checkpoints" "$sample" --checkpoint "$weights" "${tiny[@]}" --no-ema --out "$dir" ;;
  sample_wrong_size)
    expect_error "big.png: image is 32x32 but the model takes 28x28" \
      "$sample" --checkpoint "$ckpt" "${tiny[@]}" --init "$data/big/big.png" --out "$dir" ;;
  sample_wrong_size_in_folder)
    expect_error "b.png: image is 32x32" "$sample" --checkpoint "$ckpt" "${tiny[@]}" --init "$data/mixed" --out "$dir" ;;
  sample_empty_folder)
    expect_error "no images" "$sample" --checkpoint "$ckpt" "${tiny[@]}" --init "$data/empty" --out "$dir" ;;
  sample_missing_init)
    expect_error "nope.png: no such file" "$sample" --checkpoint "$ckpt" "${tiny[@]}" --init "$data/nope.png" --out "$dir" ;;
  sample_unreadable_init)
    expect_error "garbage.png: cannot read image" "$sample" --checkpoint "$ckpt" "${tiny[@]}" --init "$data/garbage.png" --out "$dir" ;;
  sample_negative_steps) expect_error "--steps: must be an integer in [1, 100000] (got -3)" "$sample" --checkpoint "$ckpt" --steps -3 --out "$dir" ;;
  sample_zero_steps) expect_error "--steps: must be an integer in [1, 100000] (got 0)" "$sample" --checkpoint "$ckpt" --steps 0 --out "$dir" ;;
  sample_zero_count) expect_error "--count: must be an integer in [1, 1000000] (got 0)" "$sample" --checkpoint "$ckpt" --count 0 --out "$dir" ;;
  sample_batch_zero) expect_error "--batch: must be an integer in [1, 65536] (got 0)" "$sample" --checkpoint "$ckpt" --batch 0 --out "$dir" ;;
  sample_strength_high)
    expect_error "--strength: must be a finite number in [0, 1] (got 1.5)" "$sample" --checkpoint "$ckpt" --init "$data/init" --strength 1.5 --out "$dir" ;;
  sample_strength_negative)
    expect_error "--strength: must be a finite number in [0, 1] (got -0.1)" "$sample" --checkpoint "$ckpt" --init "$data/init" --strength -0.1 --out "$dir" ;;
  sample_strength_without_init) expect_error "--strength goes with --init" "$sample" --checkpoint "$ckpt" --strength 0.5 ;;
  sample_unknown_sampler) expect_error "unknown sampler 'dpm_fast'" "$sample" --checkpoint "$ckpt" --sampler dpm_fast ;;
  sample_unknown_schedule) expect_error "unknown schedule 'linear'" "$sample" --checkpoint "$ckpt" --schedule linear ;;
  sample_not_a_number) expect_error "--steps" "$sample" --checkpoint "$ckpt" --steps many ;;
  sample_out_is_input)
    mkdir -p "$dir/in"
    cp "$data/init/in0.png" "$dir/in/"
    expect_error "--out is the folder of the input images" \
      "$sample" --checkpoint "$ckpt" "${tiny[@]}" --init "$dir/in" --out "$dir/in" ;;

  # ---- diffuse-sample: what it makes ---------------------------------------------------
  sample_help_version)
    expect_ok "$sample" --help
    grep -q -- '--strength' "$dir/stdout" || fail "--help does not list --strength"
    expect_ok "$sample" --version
    grep -q '^diffuse ' "$dir/stdout" || fail "--version does not print the info line"
    expect_ok "$sample" --info
    grep -q '^diffuse .*device' "$dir/stderr" || fail "--info does not print the info line"
    ;;
  sample_generate)
    expect_ok "$sample" --checkpoint "$ckpt" "${tiny[@]}" --count 4 --steps 3 --batch 4 --out "$dir"
    need "$dir/grid.png" "$dir"/image-000{0,1,2,3}.png
    [[ ! -e $dir/image-0004.png ]] || fail "more images than --count"
    head -n 1 "$dir/stderr" | grep -q '^diffuse ' || fail "stderr does not start with the info line"
    grep -q '^sampled 4 image(s) in .* images/s' "$dir/stderr" || fail "no time / images per second line"
    ;;
  sample_batch_split)  # image i depends on (seed, i) only, not on --batch
    for b in 1 4; do
      expect_ok "$sample" --checkpoint "$ckpt" "${tiny[@]}" --count 4 --steps 3 --batch "$b" --seed 7 --out "$dir/b$b"
    done
    for i in 0 1 2 3; do
      "$testkit" compare "$dir/b1/image-000$i.png" "$dir/b4/image-000$i.png" 1 >/dev/null ||
        fail "image $i differs between --batch 1 and --batch 4"
    done
    # dpm_adaptive chooses each image's steps by that image's error alone
    for b in 1 4; do
      expect_ok "$sample" --checkpoint "$ckpt" "${tiny[@]}" --count 4 --sampler dpm_adaptive --rtol 0.2 --batch "$b" \
        --seed 7 --out "$dir/adaptive-b$b"
    done
    for i in 0 1 2 3; do
      "$testkit" compare "$dir/adaptive-b1/image-000$i.png" "$dir/adaptive-b4/image-000$i.png" 1 >/dev/null ||
        fail "dpm_adaptive: image $i differs between --batch 1 and --batch 4"
    done
    expect_ok "$sample" --checkpoint "$ckpt" "${tiny[@]}" --count 2 --steps 3 --seed 8 --out "$dir/other"
    ! "$testkit" compare "$dir/b1/image-0000.png" "$dir/other/image-0000.png" 8 >/dev/null ||
      fail "another seed gives the same image"
    ;;
  sample_sigma_max_below_min)  # below the schedule's own sigma_min 0.002
    expect_error "schedule would run upwards, from sigma 0.001 to 0.002" "$sample" --checkpoint "$ckpt" "${tiny[@]}" --sigma-max 0.001 ;;
  sample_sigma_min_above_max)  # above the schedule's own sigma_max 80
    expect_error "schedule would run upwards, from sigma 80 to 100" "$sample" --checkpoint "$ckpt" "${tiny[@]}" --sigma-min 100 ;;
  sample_repeated_sigmas)  # --sigma-min at the maximum: 80, 80, 80, 0 is the one step 80, 0
    for s in dpmpp_2m heun euler_ancestral; do
      expect_ok "$sample" --checkpoint "$ckpt" "${tiny[@]}" --count 2 --sampler $s --sigma-min 80 --steps 3 --out "$dir/$s-3"
      expect_ok "$sample" --checkpoint "$ckpt" "${tiny[@]}" --count 2 --sampler $s --sigma-min 80 --steps 1 --out "$dir/$s-1"
      for i in 0 1; do
        "$testkit" compare "$dir/$s-3/image-000$i.png" "$dir/$s-1/image-000$i.png" 1 >/dev/null ||
          fail "$s: three steps at one sigma differ from one step"
      done
    done
    ;;
  sample_option_ranges)  # non-finite, overflowing (1e39 is inf as a float) and out-of-range values
    for bad in "--sigma-max inf" "--sigma-max 1e39" "--sigma-min nan" "--sigma-min 0" "--guidance 1e39" "--guidance -1" \
               "--eta -inf" "--churn nan" "--strength nan" "--steps 1e3" "--count 99999999999999999999" "--class -1" \
               "--threads 0" "--batch 100000"; do
      # shellcheck disable=SC2086
      expect_error "${bad%% *}: must be " "$sample" --checkpoint "$ckpt" "${tiny[@]}" --out "$dir/out" $bad
      [[ ! -e $dir/out ]] || fail "$bad: the output folder was created"
    done ;;
  sample_schedule_limits)  # the options that cause it are named
    expect_error "--steps 1001 is more than the 1000 timesteps of the ddpm schedule" \
      "$sample" --checkpoint "$ckpt" "${tiny[@]}" --schedule ddpm --steps 1001 --out "$dir"
    expect_error "the cosine schedule has 2 of its 1000 levels between sigma 50 and 60 (--sigma-min, --sigma-max), fewer than --steps 18" \
      "$sample" --checkpoint "$ckpt" "${tiny[@]}" --schedule cosine --sigma-min 50 --sigma-max 60 --steps 18 --out "$dir"
    expect_ok "$sample" --checkpoint "$ckpt" "${tiny[@]}" --schedule ddpm --steps 1000 --count 1 --out "$dir/ddpm" ;;
  sample_precision)  # --precision bf16: close to fp32 where it runs, fp32 with a warning where not
    expect_ok "$sample" --checkpoint "$ckpt" "${tiny[@]}" --count 2 --steps 3 --out "$dir/fp32"
    expect_ok env DIFFUSE_DISABLE_BF16=1 "$sample" --checkpoint "$ckpt" "${tiny[@]}" --count 2 --steps 3 --precision bf16 --out "$dir/off"
    grep -q 'warning: --precision bf16: .*DIFFUSE_DISABLE_BF16 is set; running in fp32' "$dir/stderr" || fail "no fallback warning"
    grep -q '| matmul fp32 |' "$dir/stderr" || fail "the info line does not say fp32 after the fallback"
    for i in 0 1; do
      "$testkit" compare "$dir/fp32/image-000$i.png" "$dir/off/image-000$i.png" 0 >/dev/null || fail "the fallback is not fp32"
    done
    expect_ok "$sample" --info
    if grep -q '^bf16 available' "$dir/stderr"; then
      expect_ok "$sample" --checkpoint "$ckpt" "${tiny[@]}" --count 2 --steps 3 --precision bf16 --out "$dir/bf16"
      grep -q '| matmul bf16 |' "$dir/stderr" || fail "the info line does not say bf16"
      for i in 0 1; do  # 8-bit images: BF16 moves a few pixels by a few levels
        "$testkit" compare "$dir/fp32/image-000$i.png" "$dir/bf16/image-000$i.png" 16 >/dev/null ||
          fail "bf16 image $i is far from fp32 ($("$testkit" compare "$dir/fp32/image-000$i.png" "$dir/bf16/image-000$i.png" 16))"
      done
      expect_ok "$train" --data "$data/train.idx" "${tiny[@]}" --steps 2 --batch 8 --precision bf16 --out "$dir/train"
      need "$dir/train/checkpoint.safetensors"
    fi
    expect_error "--precision: bf17 not in {fp32,bf16}" "$sample" --checkpoint "$ckpt" "${tiny[@]}" --precision bf17
    expect_error "--precision: fp16 not in {fp32,bf16}" "$train" --data "$data/train.idx" --precision fp16 ;;
  sample_device)  # --device and DIFFUSE_DEVICE: auto runs, gpu without a GPU is one clear error
    expect_ok "$sample" --checkpoint "$ckpt" "${tiny[@]}" --count 1 --steps 2 --device auto --out "$dir/auto"
    grep -Eq '\| device (cpu|gpu)' "$dir/stderr" || fail "the info line does not say the device"
    if "$sample" --checkpoint "$ckpt" "${tiny[@]}" --count 1 --steps 2 --device gpu --out "$dir/gpu" >"$dir/stdout" 2>"$dir/stderr"; then
      grep -q '| device gpu' "$dir/stderr" || fail "--device gpu ran, but the info line does not say gpu"
    else
      expect_error "--device gpu: diffuse: no GPU to run on: " "$sample" --checkpoint "$ckpt" "${tiny[@]}" --device gpu --out "$dir/gpu"
      [[ ! -e $dir/gpu/grid.png ]] || fail "--device gpu failed but wrote images"
    fi
    DIFFUSE_DEVICE=tpu expect_error "DIFFUSE_DEVICE=tpu: expected auto, cpu or gpu" "$sample" --checkpoint "$ckpt" "${tiny[@]}"
    expect_error "--device: bogus not in {auto,cpu,gpu}" "$sample" --checkpoint "$ckpt" "${tiny[@]}" --device bogus
    if "$train" --data "$data/train.idx" "${tiny[@]}" --steps 1 --batch 8 --device gpu --out "$dir/train" \
        >"$dir/stdout" 2>"$dir/stderr"; then
      grep -q '| device gpu' "$dir/stderr" || fail "diffuse-train --device gpu ran, but the info line does not say gpu"
    else
      expect_error "--device gpu: diffuse: no GPU to run on: " "$train" --data "$data/train.idx" "${tiny[@]}" \
        --device gpu --out "$dir/train"
      [[ ! -e $dir/train/checkpoint.safetensors ]] || fail "diffuse-train --device gpu failed but wrote a checkpoint"
    fi
    DIFFUSE_DEVICE=cpu expect_ok "$train" --data "$data/train.idx" "${tiny[@]}" --steps 1 --batch 8 --out "$dir/train-cpu"
    grep -q '| device cpu' "$dir/stderr" || fail "DIFFUSE_DEVICE=cpu: the info line does not say cpu" ;;
  sample_samplers)  # every sampler and schedule runs, from the raw and the EMA weights
    for s in euler:karras heun:exponential euler_ancestral:vp dpmpp_2m:cosine ddim:ddpm heun:ve dpm_2:karras \
      dpm_2_ancestral:exponential lms:karras dpmpp_2s_ancestral:vp dpmpp_sde:karras dpmpp_2m_sde:exponential \
      dpmpp_2m_sde_heun:karras dpmpp_3m_sde:karras ipndm:karras dpm_adaptive:exponential; do
      expect_ok "$sample" --checkpoint "$ckpt" "${tiny[@]}" --count 2 --steps 3 --sampler "${s%%:*}" --schedule "${s##*:}" \
        --out "$dir/${s%%:*}-${s##*:}"
      need "$dir/${s%%:*}-${s##*:}/image-0001.png"
    done
    expect_ok "$sample" --checkpoint "$ckpt" "${tiny[@]}" --no-ema --count 1 --steps 2 --out "$dir/raw"
    grep -q 'raw (non-EMA) weights' "$dir/stderr" || fail "--no-ema did not load the raw weights"
    expect_ok "$sample" --checkpoint "$weights" "${tiny[@]}" --count 1 --steps 2 --out "$dir/weights"
    need "$dir/weights/image-0000.png"
    expect_error "--churn applies to the samplers euler, heun, dpm_2, not lms" \
      "$sample" --checkpoint "$ckpt" --sampler lms --churn 1 --out "$dir/x"
    expect_error "--eta applies to the samplers euler_ancestral, dpm_2_ancestral, dpmpp_2s_ancestral, dpmpp_sde, dpmpp_2m_sde, dpmpp_2m_sde_heun, dpmpp_3m_sde, ddim, dpm_adaptive, not heun" \
      "$sample" --checkpoint "$ckpt" --sampler heun --eta 1 --out "$dir/x"
    expect_error "--rtol applies to the samplers dpm_adaptive, not heun" \
      "$sample" --checkpoint "$ckpt" --sampler heun --rtol 0.01 --out "$dir/x"
    expect_error "--steps 1: dpm_adaptive takes its range from the schedule's sigmas, which need --steps 2 or more" \
      "$sample" --checkpoint "$ckpt" --sampler dpm_adaptive --steps 1 --out "$dir/x"
    expect_ok "$sample" --checkpoint "$ckpt" "${tiny[@]}" --count 2 --sampler dpm_adaptive --eta 1 --atol 0.05 --out "$dir/adaptive"
    grep -q '^dpm_adaptive: [0-9.]* denoiser evaluations per image (at most [0-9]*), [0-9]* steps accepted' "$dir/stderr" ||
      fail "dpm_adaptive does not report its evaluations"
    ;;
  train_resume_with_labels)  # the shared run was trained without labels
    cp -r "$work/train" "$dir/run"
    expect_error "the run was trained without labels: resume it without --labels" \
      "$train" --data "$data/train.idx" --labels "$data/train-labels.idx" "${tiny[@]}" --out "$dir/run" --resume ;;
  sample_class_unconditional) expect_error "--class needs a class-conditional model" "$sample" --checkpoint "$ckpt" "${tiny[@]}" --class 3 ;;
  sample_guidance_without_class) expect_error "--guidance goes with --class" "$sample" --checkpoint "$ckpt" "${tiny[@]}" --guidance 3 ;;
  class_conditional)  # --labels trains a conditional model; --class and --guidance sample from it
    expect_ok "$train" --data "$data/train.idx" --labels "$data/train-labels.idx" "${tiny[@]}" --steps 3 --batch 4 \
      --out "$dir/run" --sample-every 0
    need "$dir/run/checkpoint.safetensors" "$dir/run/model_ema.safetensors" "$dir/run/samples.png"
    grep -q '"classes":10' "$dir/run/log.jsonl" || fail "the log does not record 10 classes"
    for src in checkpoint model_ema; do
      expect_ok "$sample" --checkpoint "$dir/run/$src.safetensors" "${tiny[@]}" --class 3 --guidance 2.5 --count 2 \
        --steps 3 --out "$dir/$src"
      need "$dir/$src/image-0001.png"
      grep -q 'class 3 of 10, classifier-free guidance 2.5' "$dir/stderr" || fail "no class line ($src)"
      grep -q '10 network evaluations per image' "$dir/stderr" || fail "guidance should evaluate twice per step ($src)"
    done
    expect_ok "$sample" --checkpoint "$dir/run/checkpoint.safetensors" "${tiny[@]}" --count 2 --steps 3 --out "$dir/none"
    ! "$testkit" compare "$dir/none/image-0000.png" "$dir/checkpoint/image-0000.png" 0 >/dev/null ||
      fail "--class made no difference"
    expect_error "--class 10 is not a class of the model (0..9)" \
      "$sample" --checkpoint "$dir/run/checkpoint.safetensors" "${tiny[@]}" --class 10
    expect_error "the run was trained with labels (10 classes): pass --labels FILE or --class-folders to resume it" \
      "$train" --data "$data/train.idx" "${tiny[@]}" --batch 4 --out "$dir/run" --resume
    expect_error "no such file" "$sample" --checkpoint "$dir/run/nope.safetensors" "${tiny[@]}" --class 3
    expect_ok "$train" --data "$data/train.idx" --labels "$data/train-labels.idx" "${tiny[@]}" --steps 4 --batch 4 \
      --out "$dir/run" --resume --sample-every 0
    grep -q 'resumed from .* at step 3' "$dir/stderr" || fail "did not resume at step 3"
    ;;
  class_folders)  # data/<class>/*.png: a class-conditional model with the folders' names as classes
    mkdir -p "$dir/cls/dark" "$dir/cls/light/deeper"
    for i in 0 1 2; do
      "$testkit" png "$dir/cls/dark/d$i.png" 28 28 "$i"
      "$testkit" png "$dir/cls/light/deeper/l$i.png" 28 28 "$((i + 5))"
    done
    expect_ok "$train" --data "$dir/cls" --class-folders "${tiny[@]}" --steps 2 --batch 4 --out "$dir/run" --sample-every 0
    grep -q "data: 6 images of 28x28x1 from .*; 2 classes: dark, light" "$dir/stderr" || fail "no data line with the classes"
    grep -q '"classes":2' "$dir/run/log.jsonl" || fail "the log does not record the 2 classes of the data"
    grep -q '"train.class_names":"\[\\"dark\\",\\"light\\"\]"' "$dir/run/checkpoint.safetensors" ||
      fail "the checkpoint does not name the classes"
    expect_ok "$sample" --checkpoint "$dir/run/checkpoint.safetensors" --class 1 --count 1 --steps 2 --out "$dir/s"
    expect_error "--class-folders needs --data to be a folder" \
      "$train" --data "$data/train.idx" --class-folders "${tiny[@]}" --out "$dir/x"
    expect_error "two sources of labels" \
      "$train" --data "$dir/cls" --class-folders --labels "$data/train-labels.idx" "${tiny[@]}" --out "$dir/x"
    for k in 0 1 2 3 4 5 6 7 8 9 10; do mkdir -p "$dir/many/c$k"; cp "$dir/cls/dark/d0.png" "$dir/many/c$k/"; done
    expect_error "11 class folders; the programs' class-conditional models take at most 10 classes" \
      "$train" --data "$dir/many" --class-folders "${tiny[@]}" --out "$dir/x"
    cp "$dir/cls/dark/d0.png" "$dir/cls/stray.png"
    expect_error "stray.png: an image outside the class folders" \
      "$train" --data "$dir/cls" --class-folders "${tiny[@]}" --out "$dir/x"
    ;;
  colour_shapes)  # colour data trains edm-cifar-small and samples in its colours (not grey, not BGR)
    mkdir -p "$dir/rgb" "$dir/rgba"
    "$testkit" shapes "$dir/rgb" 48 32 230 130 30
    "$testkit" shapes "$dir/rgba" 2 32 230 130 30 alpha
    expect_error "shape-0000.png: has transparent pixels" \
      "$train" --data "$dir/rgba" --model edm-cifar-small --alpha error --out "$dir/x"
    expect_ok "$train" --data "$dir/rgba" --model edm-cifar-small --steps 1 --batch 2 --out "$dir/alpha" --sample-every 0
    grep -q "2 with transparent pixels composited onto white (--alpha)" "$dir/stderr" || fail "no word on the alpha channel"
    expect_ok "$train" --data "$dir/rgb" --model edm-cifar-small --steps "${DIFFUSE_COLOUR_STEPS:-60}" --batch 8 \
      --lr 3e-3 --warmup 10 --xflip --out "$dir/run" --sample-every 0
    grep -q "data: 48 images of 32x32x3 from .*, 0.6 MiB in memory" "$dir/stderr" || fail "no data line with the size"
    grep -q "mirrored left-right half of the time (--xflip)" "$dir/stderr" || fail "no word on --xflip"
    expect_ok "$sample" --checkpoint "$dir/run/checkpoint.safetensors" --count 4 --steps 10 --out "$dir/s"
    grep -q "^model edm-cifar-small: " "$dir/stderr" || fail "the checkpoint's model was not used"
    read -r r g b < <("$testkit" mean-rgb "$dir"/s/image-000?.png)
    echo "mean colour of the samples: $r $g $b (data: about 215 121 28)"
    awk -v r="$r" -v g="$g" -v b="$b" 'BEGIN { exit !(r > g + 40 && g > b + 40) }' ||
      fail "samples of mean colour ($r, $g, $b): the data's order R > G > B is lost"
    read -r w h < <("$testkit" size "$dir/s/grid.png")
    ((w >= 512)) || fail "grid.png is $w x $h, not enlarged to at least 512 px wide"
    read -r w h < <("$testkit" size "$dir/s/image-0000.png")
    ((w == 32 && h == 32)) || fail "image-0000.png is $w x $h, not the model's 32 x 32"
    ;;
  sample_inpaint)  # --mask: the black half of the mask is kept to the byte, the white half redrawn
    "$testkit" mask "$dir/mask.png" 28 28
    for s in heun euler_ancestral dpmpp_2m_sde dpm_adaptive; do
      expect_ok "$sample" --checkpoint "$ckpt" --init "$data/init/in1.png" --mask "$dir/mask.png" --sampler "$s" \
        --steps 6 --out "$dir/$s"
      grep -q "inpainting: the white pixels of .*mask.png are regenerated" "$dir/stderr" || fail "no inpainting line"
      grep -q "strength 1: noised to sigma 80" "$dir/stderr" || fail "inpainting does not start from pure noise"
      read -r kept changed < <("$testkit" inpainted "$data/init/in1.png" "$dir/$s/in1.png" "$dir/mask.png")
      echo "$s: kept half within $kept of the input, regenerated half $changed away on average"
      ((kept <= 1)) || fail "$s changed the kept half (by up to $kept)"
      awk -v c="$changed" 'BEGIN { exit !(c > 5) }' || fail "$s left the masked half as it was ($changed)"
    done
    expect_error "--mask goes with --init" "$sample" --checkpoint "$ckpt" --mask "$dir/mask.png" --out "$dir/x"
    expect_error "nope.png: no such file" "$sample" --checkpoint "$ckpt" --init "$data/init/in1.png" --mask "$dir/nope.png" \
      --out "$dir/x"
    ;;
  own_model)  # TRAIN and SAMPLE are examples/own_model_*.cpp: train_main / sample_main for a user's configuration
    mkdir -p "$dir/rgb"
    "$testkit" shapes "$dir/rgb" 4 48 40 90 200
    expect_ok "$train" --data "$dir/rgb" --steps 2 --batch 2 --out "$dir/run" --sample-every 0
    grep -q '"model":"my-net"' "$dir/run/log.jsonl" || fail "the run is not recorded as my-net"
    expect_ok "$sample" --checkpoint "$dir/run/checkpoint.safetensors" --count 1 --steps 2 --out "$dir/s"
    grep -q "^model my-net: " "$dir/stderr" || fail "the sampler did not use my-net"
    expect_error "--model: edm-tiny not in {my-net}" "$train" --data "$dir/rgb" --model edm-tiny --out "$dir/x"
    ;;
  sample_pytorch_weights)  # weights written by PyTorch's twin of edm-tiny (tests/fixtures)
    fixture=$(cd "$(dirname "$0")/../fixtures" && pwd)/edm_tiny_weights.safetensors
    expect_ok "$sample" --checkpoint "$fixture" "${tiny[@]}" --count 2 --steps 2 --out "$dir"
    need "$dir/image-0000.png" "$dir/image-0001.png" "$dir/grid.png"
    ;;
  sample_img2img_zero)  # strength 0 returns the input
    expect_ok "$sample" --checkpoint "$ckpt" "${tiny[@]}" --init "$data/init" --strength 0 --steps 4 --batch 3 --out "$dir"
    need "$dir/grid.png" "$dir/ssim.csv"
    for i in 0 1 2 3; do
      "$testkit" compare "$data/init/in$i.png" "$dir/in$i.png" 0 >/dev/null || fail "in$i.png changed at strength 0"
    done
    m=$(mean_ssim)
    awk -v m="$m" 'BEGIN { exit !(m >= 0.9999) }' || fail "mean SSIM $m at strength 0"
    ;;
  sample_img2img_half)  # strength 0.5 changes the input but keeps some of it
    expect_ok "$sample" --checkpoint "$ckpt" "${tiny[@]}" --init "$data/init" --strength 0.5 --steps 6 --out "$dir"
    need "$dir"/in{0,1,2,3}.png "$dir/grid.png"
    m=$(mean_ssim)
    awk -v m="$m" 'BEGIN { exit !(m > 0 && m < 1) }' || fail "mean SSIM $m at strength 0.5, expected in (0, 1)"
    while IFS=, read -r _ _ s; do
      awk -v s="$s" 'BEGIN { exit !(s > 0 && s < 1) }' || fail "an SSIM of $s at strength 0.5"
    done < <(tail -n +2 "$dir/ssim.csv")
    ;;
  sample_img2img_resize)  # --resize accepts another size; one file in, one file out
    expect_ok "$sample" --checkpoint "$ckpt" "${tiny[@]}" --init "$data/big/big.png" --resize --strength 0.3 --steps 4 --out "$dir"
    need "$dir/big.png" "$dir/grid.png"
    grep -q '^mean SSIM' "$dir/stderr" || fail "no SSIM line"
    ;;
  eval_frechet)  # diffuse-eval: a classifier on 16 labelled images, then distances
    cls=$dir/classifier.safetensors
    expect_ok "$eval" classifier --data "$data/train.idx" --labels "$data/train-labels.idx" \
      --test-data "$data/train.idx" --test-labels "$data/train-labels.idx" --epochs 2 --batch 8 --out "$cls"
    need "$cls"
    grep -q '^test accuracy [0-9.]* (16 images' "$dir/stdout" || fail "no test accuracy line"
    "$testkit" json "$cls" || fail "the classifier's header is not JSON"
    expect_ok "$eval" fd --classifier "$cls" --reference "$data/train.idx" --images "$data/train.idx"
    d=$(sed -n 's/^frechet_distance //p' "$dir/stdout")
    awk -v d="$d" 'BEGIN { exit !(d > -1e-4 && d < 1e-4) }' || fail "a set against itself: distance $d, expected 0"
    expect_ok "$eval" fd --classifier "$cls" --reference "$data/train.idx" --images "$data/init"
    d=$(sed -n 's/^frechet_distance //p' "$dir/stdout")
    awk -v d="$d" 'BEGIN { exit !(d > 1e-4) }' || fail "other images: distance $d, expected > 0"
    grep -q "4 images of $data/init against 16" "$dir/stderr" || fail "the image counts are not reported"
    # --count and --skip pick disjoint parts of one set.
    expect_ok "$eval" fd --classifier "$cls" --reference "$data/train.idx" --images "$data/train.idx" --count 8 --skip 8
    grep -q "8 images of" "$dir/stderr" || fail "--count 8 --skip 8 did not take 8 images"
    ;;
  eval_posthoc_ema)  # power-EMA snapshots while training, resumed, and diffuse-eval ema combining them
    run=(--data "$data/train.idx" "${tiny[@]}" --batch 4 --sample-every 0 --ema-snapshot-every 2)
    expect_ok "$train" "${run[@]}" --steps 4 --out "$dir/run"
    expect_ok "$train" "${run[@]}" --steps 6 --resume --out "$dir/run"
    snaps=$dir/run/ema-snapshots
    for t in 8 16 24; do
      for s in 0.050 0.100; do need "$snaps/phema-$(printf %012d "$t")-$s.safetensors"; done
    done
    [[ $(ls "$snaps" | wc -l) == 6 ]] || fail "expected 6 snapshots (3 times x 2 widths): $(ls "$snaps")"
    "$testkit" json "$dir/run/checkpoint.safetensors" || fail "the checkpoint's header is not JSON"
    grep -q '"phema050.out_conv.weight"' "$dir/run/checkpoint.safetensors" || fail "the checkpoint lacks the power EMAs"
    # A kept width reconstructs itself: its samples match the snapshot's.
    expect_ok "$eval" ema --snapshots "$snaps" --sigma-rel 0.05 --out "$dir/r05.safetensors"
    grep -q "^sigma_rel 0.05 at 24 images from 6 snapshots" "$dir/stdout" || fail "no summary line"
    expect_ok "$eval" ema --snapshots "$snaps" --sigma-rel 0.08 --at 16 --out "$snaps/phema-r08.safetensors"
    grep -q "at 16 images from 4 snapshots" "$dir/stdout" || fail "--at 16 did not take the 4 snapshots up to 16 images"
    # ... and that reconstruction, written into the folder, is not taken for a snapshot.
    expect_ok "$eval" ema --snapshots "$snaps" --sigma-rel 0.05 --out "$dir/r05b.safetensors"
    grep -q "from 6 snapshots" "$dir/stdout" || fail "a reconstruction in the folder was taken for a snapshot"
    for w in "$dir/r05.safetensors" "$snaps/phema-000000000024-0.050.safetensors"; do
      expect_ok "$sample" --checkpoint "$w" --count 2 --steps 4 --seed 3 --out "$dir/s-$(basename "$w" .safetensors)"
    done
    "$testkit" compare "$dir/s-r05/grid.png" "$dir/s-phema-000000000024-0.050/grid.png" 1 >/dev/null ||
      fail "the reconstruction of a kept width samples differently from the snapshot"
    expect_error "no snapshot at 10 images" "$eval" ema --snapshots "$snaps" --at 10 --out "$dir/x.safetensors"
    expect_error "--sigma-rel" "$eval" ema --snapshots "$snaps" --sigma-rel 0.3 --out "$dir/x.safetensors"
    expect_error "no power-EMA snapshots" "$eval" ema --snapshots "$data/empty" --out "$dir/x.safetensors"
    expect_error "--ema-snapshot-every" "$train" "${run[@]}" --ema-snapshot-every -1 --out "$dir/x"
    [[ ! -e $dir/x.safetensors ]] || fail "a failed reconstruction left a file"
    ;;
  eval_train_every)  # diffuse-train --eval-every: the distance in log.jsonl, the same noise at every evaluation
    cls=$dir/classifier.safetensors
    expect_ok "$eval" classifier --data "$data/train.idx" --labels "$data/train-labels.idx" \
      --test-data "$data/train.idx" --test-labels "$data/train-labels.idx" --epochs 1 --batch 8 --out "$cls"
    run=(--data "$data/train.idx" "${tiny[@]}" --batch 4 --sample-every 0 --steps 4)
    ev=(--eval-every 2 --eval-count 4 --eval-classifier "$cls" --eval-reference "$data/train.idx")
    expect_ok "$train" "${run[@]}" "${ev[@]}" --out "$dir/a"
    [[ $(grep -c '"frechet_distance":[0-9]' "$dir/a/log.jsonl") == 2 ]] || fail "expected 2 evaluations in log.jsonl (steps 2, 4)"
    grep -q "^step 4: Fréchet distance" "$dir/stderr" || fail "the evaluation is not reported on stderr"
    expect_ok "$train" "${run[@]}" "${ev[@]}" --out "$dir/b"
    diff <(grep -o '"frechet_distance":[^,}]*' "$dir/a/log.jsonl") <(grep -o '"frechet_distance":[^,}]*' "$dir/b/log.jsonl") ||
      fail "two identical runs logged different distances"
    expect_error "--eval-every needs --eval-classifier" "$train" "${run[@]}" --eval-every 2 --out "$dir/x"
    expect_error "go with --eval-every" "$train" "${run[@]}" --eval-classifier "$cls" --out "$dir/x"
    expect_error "--eval-count" "$train" "${run[@]}" "${ev[@]}" --eval-count 1 --out "$dir/x"
    expect_error "not a diffuse classifier" "$train" "${run[@]}" --eval-every 2 --eval-classifier "$ckpt" \
      --eval-reference "$data/train.idx" --out "$dir/x"
    expect_error "nope.idx" "$train" "${run[@]}" "${ev[@]}" --eval-reference "$data/nope.idx" --out "$dir/x"
    [[ ! -e $dir/x/checkpoint.safetensors ]] || fail "a refused run wrote a checkpoint"
    ;;
  eval_errors)  # bad input to diffuse-eval: one error line naming the file or option
    cls=$dir/classifier.safetensors
    expect_error "nope.safetensors: no such file" "$eval" fd --classifier "$dir/nope.safetensors" \
      --reference "$data/train.idx" --images "$data/train.idx"
    expect_error "not a classifier" "$eval" fd --classifier "$ckpt" --reference "$data/train.idx" --images "$data/init"
    expect_error "garbage.safetensors" "$eval" fd --classifier "$data/garbage.safetensors" \
      --reference "$data/train.idx" --images "$data/init"
    expect_error "labels-short.idx: 8 labels for 16 images" "$eval" classifier --data "$data/train.idx" \
      --labels "$data/labels-short.idx" --test-data "$data/train.idx" --test-labels "$data/train-labels.idx" --out "$cls"
    expect_error "labels-12.idx: label 1" "$eval" classifier --data "$data/train.idx" --labels "$data/labels-12.idx" \
      --test-data "$data/train.idx" --test-labels "$data/train-labels.idx" --out "$cls"
    expect_error "--test-labels" "$eval" classifier --data "$data/train.idx" --labels "$data/train-labels.idx" \
      --test-data "$data/train.idx" --out "$cls"
    expect_error "--shape" "$eval" classifier --data "$data/train.idx" --labels "$data/train-labels.idx" \
      --test-data "$data/train.idx" --test-labels "$data/train-labels.idx" --shape 30x30x1 --out "$cls"
    expect_error "IDX files hold grey images" "$eval" classifier --data "$data/train.idx" \
      --labels "$data/train-labels.idx" --test-data "$data/train.idx" --test-labels "$data/train-labels.idx" \
      --shape 32x32x3 --out "$cls"
    expect_error "--epochs" "$eval" classifier --data "$data/train.idx" --labels "$data/train-labels.idx" \
      --test-data "$data/train.idx" --test-labels "$data/train-labels.idx" --epochs 0 --out "$cls"
    [[ ! -e $cls ]] || fail "a failed run left $cls behind"
    expect_ok "$eval" classifier --data "$data/train.idx" --labels "$data/train-labels.idx" \
      --test-data "$data/train.idx" --test-labels "$data/train-labels.idx" --epochs 1 --batch 8 --out "$cls"
    expect_error "none left after skipping 16" "$eval" fd --classifier "$cls" --reference "$data/train.idx" \
      --images "$data/train.idx" --skip 16
    expect_error "at least two images" "$eval" fd --classifier "$cls" --reference "$data/train.idx" \
      --images "$data/train.idx" --count 1
    expect_error "big.png" "$eval" fd --classifier "$cls" --reference "$data/train.idx" --images "$data/big"
    expect_error "big.idx" "$eval" fd --classifier "$cls" --reference "$data/big.idx" --images "$data/train.idx"
    expect_error "empty: no images" "$eval" fd --classifier "$cls" --reference "$data/train.idx" --images "$data/empty"
    expect_error "A subcommand is required" "$eval"
    ;;
  *)
    echo "unknown case $case_name" >&2
    exit 2
    ;;
esac
