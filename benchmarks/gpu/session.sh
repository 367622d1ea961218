#!/usr/bin/env bash
# One GPU session in one device call: GPU tests, benchmarks, kernel profiles.
#
#   bash benchmarks/gpu/session.sh [OUTDIR]   # OUTDIR: default $OUT, else /tmp/anodescope-gpu-session
#
# Runs from the repository root on the device (Python 3.12 with CuPy, no network). Steps, in order
# of importance, each with a time budget (seconds) and a variable that skips it:
#   wheels   GPU_SKIP_WHEELS   GPU_BUDGET_WHEELS=60   install .whl/*.whl into $GPU_SITE (/tmp/site)
#   env      GPU_SKIP_ENV      GPU_BUDGET_ENV=60      nvidia-smi, nvcc --version, check_env.py -> env.txt
#   tests    GPU_SKIP_TESTS    GPU_BUDGET_TESTS=240   pytest -m gpu -> pytest-gpu.log, junit-gpu.xml
#   bench    GPU_SKIP_BENCH    GPU_BUDGET_BENCH=240   benchmarks/run.py, one topic at a time -> results/
#   profile  GPU_SKIP_PROFILE  GPU_BUDGET_PROFILE=90  benchmarks/profile_kernels.py --device gpu (if present)
#   ncu      GPU_SKIP_NCU      GPU_BUDGET_NCU=45      Nsight Compute on one recon kernel (if ncu exists)
# The whole run stops starting steps GPU_SESSION_DEADLINE_S (560) seconds after it began, so it fits a
# 10-minute call; a step that fails or times out does not stop the others. Other knobs:
#   GPU_PYTHON (python3), GPU_SITE (/tmp/site), GPU_PYTEST_PATHS (tests), GPU_PYTEST_ARGS,
#   GPU_TEST_TIMEOUT (120 s per test, with pytest-timeout), GPU_BENCH_TOPICS
#   (e2e hexitec segment recon compton stripping: the acceptance targets first; e2e leaves
#   GPU_BENCH_RESERVE_S (80) seconds of the bench budget to the topics after it, and its CPU case
#   runs at ANODESCOPE_BENCH_E2E_N=256 unless set), GPU_BENCH_QUICK=1 (small sizes),
#   GPU_PROFILE_QUICK=1 (profile_kernels.py --quick), GPU_NCU_KERNEL (backproject_linear) with
#   GPU_NCU_ALGO (fbp; the kernel grid_polar needs fourier).
# Dry mode (GPU_SESSION_DRY=1, or automatic when no CUDA device is seen): wheels, env report and a
# pytest --collect-only of the GPU tests; benchmarks and profiles are skipped.
#
# Files under OUTDIR (the device returns at most 8, two folders deep): summary.md, env.txt,
# pytest-gpu.log, junit-gpu.xml, results/<machine>.json and .md (GPU model), profile.md (profile_kernels.py's table),
# session.tgz (every log, env.json, profile_kernels.py's json and png, the ncu report).
set -u -o pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 2
REPO=$(pwd)
OUTDIR=${1:-${OUT:-${TMPDIR:-/tmp}/anodescope-gpu-session}}
mkdir -p "$OUTDIR" || exit 2
OUTDIR=$(cd "$OUTDIR" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-session.XXXXXX")
PY=${GPU_PYTHON:-python3}
SITE=${GPU_SITE:-/tmp/site}
DEADLINE=${GPU_SESSION_DEADLINE_S:-560}
START=$SECONDS
ROWS=$WORK/steps.tsv
: >"$ROWS"

export MPLBACKEND=Agg PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
export NUMBA_CACHE_DIR=${NUMBA_CACHE_DIR:-/tmp/numba-cache} CUPY_CACHE_DIR=${CUPY_CACHE_DIR:-/tmp/cupy-cache}
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

log() { echo "[session $(date -u +%H:%M:%S) +$((SECONDS - START))s] $*"; }

# Dry when asked, or when CuPy sees no CUDA device.
DRY=${GPU_SESSION_DRY:-auto}
if [ "$DRY" = auto ]; then
    if timeout 60 "$PY" -c "import cupy, sys; sys.exit(cupy.cuda.runtime.getDeviceCount() < 1)" >/dev/null 2>&1; then
        DRY=0
    else
        DRY=1
    fi
fi
[ "$DRY" = 1 ] && log "dry mode: no GPU work, only wheels, env report and test collection"

summary() {  # rewrite summary.md and session.tgz from what has run so far
    {
        echo "# GPU session $(date -u +%Y-%m-%dT%H:%M:%SZ) on ${HOSTNAME:-$(uname -n)}$([ "$DRY" = 1 ] && echo ' (dry)')"
        echo
        echo "| step | status | seconds | note |"
        echo "|---|---|---|---|"
        while IFS=$'\t' read -r name status secs note; do
            echo "| $name | $status | $secs | $note |"
        done <"$ROWS"
        echo
        echo "Elapsed $((SECONDS - START)) s of the $DEADLINE s deadline. Files: summary.md, env.txt,"
        echo "pytest-gpu.log, junit-gpu.xml, results/, profile.md, session.tgz (all logs: tar -xzf session.tgz)."
        if [ -f "$OUTDIR/pytest-gpu.log" ]; then
            echo
            echo '## GPU tests (last lines)'
            echo '```'
            tail -n 40 "$OUTDIR/pytest-gpu.log"
            echo '```'
        fi
        if [ -f "$OUTDIR/env.txt" ]; then
            echo
            echo '## Environment'
            echo '```'
            cat "$OUTDIR/env.txt"
            echo '```'
        fi
    } >"$OUTDIR/summary.md.tmp" && mv "$OUTDIR/summary.md.tmp" "$OUTDIR/summary.md"
    cp -f "$OUTDIR"/env.txt "$OUTDIR"/pytest-gpu.log "$WORK"/ 2>/dev/null
    tar -czf "$OUTDIR/session.tgz.tmp" -C "$WORK" . 2>/dev/null && mv "$OUTDIR/session.tgz.tmp" "$OUTDIR/session.tgz"
}

record() {  # record NAME STATUS SECONDS NOTE
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$ROWS"
    log "$1: $2 ($3 s) $4"
    summary
}

# budget NAME BUDGET RESERVE SKIPVAR: print the seconds step NAME may use, keeping RESERVE seconds
# for later steps (0: skip it, recorded with the reason).
budget() {
    local name=$1 want=$2 reserve=$3 skipvar=$4 left
    if [ "${!skipvar:-0}" = 1 ]; then record "$name" skipped - "$skipvar=1" >&2; echo 0; return; fi
    left=$((DEADLINE - (SECONDS - START) - reserve))
    if [ "$left" -lt 15 ]; then record "$name" skipped - "no time left before the deadline" >&2; echo 0; return; fi
    [ "$want" -gt "$left" ] && want=$left
    echo "$want"
}

# run_logged LOG SECONDS CMD...: run CMD under timeout (SIGINT first, so pytest still writes its
# report), output to the terminal and appended to LOG; return CMD's status (124: timed out).
run_logged() {
    local logfile=$1 secs=$2
    shift 2
    echo "\$ $*" >>"$logfile"
    timeout -s INT -k 15 "$secs" "$@" 2>&1 | tee -a "$logfile"
    return "${PIPESTATUS[0]}"
}

status_of() { case $1 in 0) echo ok ;; 124) echo "timed out" ;; *) echo "failed (rc $1)" ;; esac; }

# ---- wheels -----------------------------------------------------------------------------------
t=$(budget wheels "${GPU_BUDGET_WHEELS:-60}" 0 GPU_SKIP_WHEELS)
if [ "$t" -gt 0 ]; then
    shopt -s nullglob
    wheels=(.whl/*.whl)
    shopt -u nullglob
    if [ ${#wheels[@]} -eq 0 ]; then
        record wheels skipped - "no .whl/*.whl (carry .whl after make gpu-wheels)"
    else
        t0=$SECONDS
        run_logged "$WORK/wheels.log" "$t" "$PY" -m pip install -q --no-index --no-deps --no-compile \
            --no-cache-dir --upgrade --target "$SITE" "${wheels[@]}"
        rc=$?
        [ $rc -eq 0 ] && export PYTHONPATH="$SITE:$PYTHONPATH"
        record wheels "$(status_of $rc)" $((SECONDS - t0)) "${#wheels[@]} wheels into $SITE"
    fi
    # the real scan some tests read from ../shared/data, carried as .whl/data/tooth.h5
    if [ -f .whl/data/tooth.h5 ] && [ ! -f ../shared/data/tooth.h5 ]; then
        mkdir -p ../shared/data && cp .whl/data/tooth.h5 ../shared/data/ && log "copied tooth.h5 to ../shared/data"
    fi
fi

# ---- env report -------------------------------------------------------------------------------
t=$(budget env "${GPU_BUDGET_ENV:-60}" 0 GPU_SKIP_ENV)
if [ "$t" -gt 0 ]; then
    t0=$SECONDS
    env_txt=$OUTDIR/env.txt
    {
        echo "== nvidia-smi"
        if command -v nvidia-smi >/dev/null; then
            timeout 20 nvidia-smi 2>&1
            timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total,memory.free,clocks.max.sm \
                --format=csv 2>&1
        else
            echo "nvidia-smi: not found"
        fi
        echo "== nvcc --version"
        if command -v nvcc >/dev/null; then timeout 20 nvcc --version 2>&1; else echo "nvcc: not found"; fi
        echo "== ncu"
        if command -v ncu >/dev/null; then timeout 20 ncu --version 2>&1 | tail -n 1; else echo "ncu: not found"; fi
        echo "== python ($PY) check_env.py"
    } >"$env_txt"
    run_logged "$env_txt" "$((t > 25 ? t - 20 : t))" "$PY" benchmarks/gpu/check_env.py --json "$WORK/env.json" >/dev/null
    rc=$?
    record env "$(status_of $rc)" $((SECONDS - t0)) "env.txt$([ $rc -eq 1 ] && echo ': an anodescope import failed')"
fi

# ---- GPU tests ----------------------------------------------------------------------------------
t=$(budget tests "${GPU_BUDGET_TESTS:-240}" 0 GPU_SKIP_TESTS)
if [ "$t" -gt 0 ]; then
    t0=$SECONDS
    args=(-m gpu -rs -q -p no:cacheprovider)
    if [ "$DRY" = 1 ]; then
        args+=(--collect-only)
    else
        args+=("--junitxml=$OUTDIR/junit-gpu.xml")
        "$PY" -c "import pytest_timeout" 2>/dev/null && args+=("--timeout=${GPU_TEST_TIMEOUT:-120}")
    fi
    # GPU_PYTEST_ARGS / GPU_PYTEST_PATHS are shell words: quotes group, as on a command line
    eval "extra=(${GPU_PYTEST_ARGS:-}) paths=(${GPU_PYTEST_PATHS:-tests})"
    run_logged "$OUTDIR/pytest-gpu.log" "$t" "$PY" -m pytest "${args[@]}" "${extra[@]}" "${paths[@]}"
    rc=$?
    last=$(grep -E '(passed|failed|skipped|error|deselected|selected|collected|no tests ran)' "$OUTDIR/pytest-gpu.log" | tail -n 1)
    st=$(status_of $rc)
    # on a GPU machine a run where nothing passed means CuPy could not use the device
    [ "$DRY" != 1 ] && [ $rc -eq 0 ] && [[ $last != *passed* ]] && st="no GPU test passed"
    record tests "$st" $((SECONDS - t0)) "$([ "$DRY" = 1 ] && echo 'collect only: ')${last//|//}"
fi

# ---- benchmarks ---------------------------------------------------------------------------------
have_profile=0
[ -f benchmarks/profile_kernels.py ] && [ "${GPU_SKIP_PROFILE:-0}" != 1 ] && have_profile=1
have_ncu=0
command -v ncu >/dev/null && [ "${GPU_SKIP_NCU:-0}" != 1 ] && have_ncu=1
reserve=$((have_profile * ${GPU_BUDGET_PROFILE:-90} + have_ncu * ${GPU_BUDGET_NCU:-45}))
if [ "$DRY" = 1 ]; then
    record bench skipped - "dry mode"
else
    t=$(budget bench "${GPU_BUDGET_BENCH:-240}" "$reserve" GPU_SKIP_BENCH)
    if [ "$t" -gt 0 ]; then
        bench_end=$((SECONDS + t))
        quick=()
        [ "${GPU_BENCH_QUICK:-0}" = 1 ] && quick=(--quick)
        topics=(${GPU_BENCH_TOPICS:-e2e hexitec segment recon compton stripping})
        for i in "${!topics[@]}"; do
            topic=${topics[$i]}
            left=$((bench_end - SECONDS))
            if [ "$left" -lt 10 ]; then record "bench $topic" skipped - "bench budget spent"; continue; fi
            # the 2048^3 end-to-end case must not starve the HEXITEC and median targets after it
            if [ "$topic" = e2e ] && [ $((i + 1)) -lt "${#topics[@]}" ]; then
                cap=$((left - ${GPU_BENCH_RESERVE_S:-80}))
                [ "$cap" -lt 60 ] && cap=60
                [ "$cap" -lt "$left" ] && left=$cap
            fi
            t0=$SECONDS
            ANODESCOPE_BENCH_E2E_N=${ANODESCOPE_BENCH_E2E_N:-256} \
            run_logged "$WORK/bench-$topic.log" "$left" "$PY" benchmarks/run.py "$topic" "${quick[@]}" \
                --out "$OUTDIR/results"
            rc=$?
            record "bench $topic" "$(status_of $rc)" $((SECONDS - t0)) "bench-$topic.log in session.tgz"
        done
    fi
fi

# ---- profile_kernels.py --------------------------------------------------------------------------
if [ "$DRY" = 1 ]; then
    record profile skipped - "dry mode"
elif [ ! -f benchmarks/profile_kernels.py ]; then
    record profile skipped - "benchmarks/profile_kernels.py absent"
else
    t=$(budget profile "${GPU_BUDGET_PROFILE:-90}" $((have_ncu * ${GPU_BUDGET_NCU:-45})) GPU_SKIP_PROFILE)
    if [ "$t" -gt 0 ]; then
        t0=$SECONDS
        mkdir -p "$WORK/profile"
        pquick=()
        [ "${GPU_PROFILE_QUICK:-0}" = 1 ] && pquick=(--quick)
        run_logged "$WORK/profile/profile.log" "$t" "$PY" benchmarks/profile_kernels.py --device gpu \
            "${pquick[@]}" --out "$WORK/profile"
        rc=$?
        md=$(find "$WORK/profile" -maxdepth 1 -name '*.md' | head -n 1)
        [ -n "$md" ] && cp "$md" "$OUTDIR/profile.md"
        record profile "$(status_of $rc)" $((SECONDS - t0)) "profile.md; json, png and log under profile/ in session.tgz"
    fi
fi

# ---- Nsight Compute on one kernel ----------------------------------------------------------------
if [ "$DRY" = 1 ]; then
    record ncu skipped - "dry mode"
elif [ "$have_ncu" = 0 ] && [ "${GPU_SKIP_NCU:-0}" != 1 ]; then
    record ncu skipped - "ncu not on PATH"
else
    t=$(budget ncu "${GPU_BUDGET_NCU:-45}" 0 GPU_SKIP_NCU)
    if [ "$t" -gt 0 ]; then
        t0=$SECONDS
        kernel=${GPU_NCU_KERNEL:-backproject_linear}
        run_logged "$WORK/ncu.txt" "$t" ncu --clock-control none --kernel-name "$kernel" --launch-count 1 \
            --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats \
            --export "$WORK/ncu-$kernel" --force-overwrite \
            "$PY" benchmarks/gpu/ncu_target.py --algorithm "${GPU_NCU_ALGO:-fbp}" >/dev/null
        rc=$?
        # the exported report as text (no GPU needed to read it back)
        [ -f "$WORK/ncu-$kernel.ncu-rep" ] &&
            timeout 30 ncu --import "$WORK/ncu-$kernel.ncu-rep" --page details >>"$WORK/ncu.txt" 2>&1
        record ncu "$(status_of $rc)" $((SECONDS - t0)) "kernel $kernel: ncu.txt, ncu-$kernel.ncu-rep in session.tgz"
    fi
fi

# ---- at most 8 files come back: anything else goes into session.tgz only -------------------------
mapfile -t extra < <(cd "$OUTDIR" && find . -type f ! -name summary.md ! -name env.txt ! -name pytest-gpu.log \
    ! -name junit-gpu.xml ! -name session.tgz ! -name profile.md ! -path './results/*' | sort)
if [ ${#extra[@]} -gt 0 ]; then
    mkdir -p "$WORK/extra"
    for f in "${extra[@]}"; do mv "$OUTDIR/$f" "$WORK/extra/" && log "moved $f into session.tgz (extra/)"; done
fi
n_res=$(find "$OUTDIR/results" -type f 2>/dev/null | wc -l)
if [ "$n_res" -gt 2 ]; then
    log "results/ holds $n_res files: only the newest 2 stay beside session.tgz"
    mkdir -p "$WORK/results"
    cp "$OUTDIR"/results/* "$WORK/results/"
    ls -t "$OUTDIR"/results/* | tail -n +3 | xargs rm -f
fi
summary
failed=$(cut -f2 "$ROWS" | grep -vc -E '^(ok|skipped)$')
rm -rf "$WORK"
log "done in $((SECONDS - START)) s, $failed step(s) not ok; see $OUTDIR/summary.md"
exit $((failed > 0 ? 1 : 0))
