#!/usr/bin/env bash
# Mutation test of kzoo modules against their own test files, with mutmut 3.8.
#
#   tools/mutation.sh kzoo/zoo/schema.py kzoo/suggest.py
#
# Each module is mutated in a throwaway copy of the repository (without .venv), where the
# mutmut configuration is written to setup.cfg, so the working tree and pyproject.toml stay
# as they are. Mutants named in docs/development.md ("Equivalent mutants") change no
# behaviour and are left out of the score. Not part of CI: a module takes minutes.
set -euo pipefail

# module -> its own test files (what a mutant of the module has to make fail)
# the download modules work together behind fetch(), so each one's tests are all of these
DOWNLOAD_TESTS="tests/test_download.py tests/test_cache.py tests/test_download_sinks.py \
tests/test_download_stream.py tests/test_cache_liveness.py"
declare -A TESTS=(
    [kzoo/zoo/schema.py]="tests/test_manifest.py tests/test_manifest_schema.py"
    [kzoo/suggest.py]="tests/test_errors.py tests/test_suggest.py"
    [kzoo/converters/assign.py]="tests/test_store_assign.py tests/test_assign_strict.py"
    [kzoo/download/sinks.py]="$DOWNLOAD_TESTS"
    [kzoo/download/stream.py]="$DOWNLOAD_TESTS"
    [kzoo/download/cache.py]="$DOWNLOAD_TESTS"
)
# tests of the repository itself: inside mutmut's mutants/ folder what they check is not there
DESELECT=(tests/test_manifest.py::test_top_level_manifest_is_a_link_to_the_packaged_file)

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mutmut=${MUTMUT:-$root/.venv/bin/mutmut}
[[ -x $mutmut ]] || mutmut=mutmut
# the equivalent mutants: every `kzoo....__mutmut_N` named in the docs
# shellcheck disable=SC2016  # the backticks are Markdown's, not a command substitution
equivalent=$(grep -oE '`kzoo\.[^`]+__mutmut_[0-9]+`' "$root/docs/development.md" |
    tr -d '`' || true)

if (($# == 0)); then
    echo "usage: $0 MODULE.py..." >&2
    exit 2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

summary=()
for module in "$@"; do
    if [[ -z ${TESTS[$module]:-} ]]; then
        echo "no test files listed for $module (see TESTS in $0)" >&2
        exit 2
    fi
    read -ra tests <<<"${TESTS[$module]}"
    copy=$work/${module//\//_}
    mkdir "$copy"
    tar -C "$root" --exclude=./.venv --exclude=./.git --exclude=./mutants -cf - . |
        tar -C "$copy" -xf -
    {
        echo "[mutmut]"
        echo "source_paths = kzoo"
        echo "only_mutate = $module"
        # forked straight from mutmut's process (TensorFlow imported), a test run that builds a
        # Keras model can hang: a surviving mutant then reads as a timeout, which mutmut counts
        # as killed
        echo "process_isolation = forkserver"
        echo "pytest_add_cli_args_test_selection ="
        printf '    %s\n' "${tests[@]}"
        echo "pytest_add_cli_args ="
        printf '    --deselect=%s\n' "${DESELECT[@]}"
    } >"$copy/setup.cfg"
    echo "== $module: mutmut run against ${tests[*]}"
    # SIGHUP ignored: a mutant of kzoo/download/cache.py probes a live process with
    # os.kill(pid, 1) instead of os.kill(pid, 0), and tests/test_cache.py names the test's
    # parent as the live process, which is mutmut's fork server: default SIGHUP would kill it
    # and the whole run. The liveness test's own child installs handlers to see the signal.
    if ! (cd "$copy" && trap '' HUP && "$mutmut" run >run.log 2>&1); then
        tail -n 40 "$copy/run.log" >&2
        exit 1
    fi
    (cd "$copy" && "$mutmut" results --all true) >"$copy/results.txt"
    total=0 killed=0 equiv=0 timeouts=0
    survivors=()
    while read -r name status; do
        name=${name%:}
        total=$((total + 1))
        listed=false
        if grep -qxF "$name" <<<"$equivalent"; then listed=true; fi
        if [[ $status == killed ]]; then
            killed=$((killed + 1))
            if $listed; then echo "listed as equivalent but killed: $name" >&2; fi
        elif $listed; then
            equiv=$((equiv + 1))
        else
            # a timeout counts as a survivor: no loop of these modules can be made endless, so
            # it means a slow or a hung test run, not a failed test
            if [[ $status == timeout ]]; then timeouts=$((timeouts + 1)); fi
            survivors+=("$name")
        fi
    done <"$copy/results.txt"
    for name in "${survivors[@]}"; do
        (cd "$copy" && "$mutmut" show "$name")
    done
    score=$(awk -v k="$killed" -v n="$((total - equiv))" \
        'BEGIN { printf "%.1f", n ? 100 * k / n : 100 }')
    summary+=("$(printf '%-28s %7d %6d %10d %8d %8d %6s %%' "$module" "$total" "$killed" \
        "$equiv" "${#survivors[@]}" "$timeouts" "$score")")
done

echo
printf '%-28s %7s %6s %10s %8s %8s %8s\n' module mutants killed equivalent survived timeouts score
printf '%s\n' "${summary[@]}"
echo "(score = killed / (mutants - equivalent); timeouts are survivors, shown above with the rest)"
