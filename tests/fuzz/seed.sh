#!/bin/sh
# seed.sh TARGET DIR — fills DIR with a seed corpus for a fuzz target, taken
# from the fixtures (FIXTURES, default ../shared/fixtures). Inputs larger than
# the fuzzer's max_len are cut to their first 256 KiB (headers matter most).
set -eu
target=$1 dir=$2
fx=${FIXTURES:-../shared/fixtures}
mkdir -p "$dir"
case $target in
fuzz_gguf)
    for f in "$fx"/models/*/*.gguf "$fx"/vocab/*.gguf "$fx"/stories260K/*.gguf; do
        head -c 262144 "$f" > "$dir/$(basename "$f")"
    done
    cp "$(dirname "$0")"/gguf/* "$dir"/ ;; # inputs that once crashed a target
fuzz_jinja)
    cp "$fx"/templates/*.jinja "$dir"/ ;;
fuzz_tokenizer)
    for f in "$fx"/vocab/*.inp; do
        awk -v d="$dir" -v b="$(basename "$f")" \
            '/^__ggml_vocab_test__$/ {n++; next} {print > (d "/" b "." n)}' "$f"
    done ;;
fuzz_request)
    cp "$(dirname "$0")"/request/* "$dir"/ ;;
*)
    echo "seed.sh: no seeds for $target" >&2 ;;
esac
