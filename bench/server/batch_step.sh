#!/bin/sh
# bench/server/batch_step.sh MODEL [--seqs "1 4 16"] [--steps N] [--threads N] [--rounds N]
#
# Builds bench/server/batch_step.c against the release build's library
# objects and runs it: decode steps of S sequences, each alone
# (model_forward per sequence) and batched (one model_forward_multi), in
# alternating rounds; a markdown table on stdout.
set -eu
cd "$(dirname "$0")/../.."
make -s build/spillway
mkdir -p build/bench
objs=$(ls build/rel/src/*/*.o | grep -v '/cli/')
# shellcheck disable=SC2086
cc -O2 -g -std=c11 -D_GNU_SOURCE -pthread -Isrc -Wall -Wextra -Wvla -o build/bench/batch_step \
    bench/server/batch_step.c $objs \
    $(pkg-config --libs jansson libpcre2-8 libutf8proc liburing libmicrohttpd) -lm
exec build/bench/batch_step "$@"
