# Shared by the tests/bench scripts. Source it from the repository root.

# bench_median FILE: the median of the numbers in FILE (microseconds, one a line), in ms.
bench_median() {
    sort -n "$1" | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.1f", m/1000}'
}

# bench_alternate ROUNDS DIR A B: runs the shell functions A and B ROUNDS times each, round by
# round, A first in odd rounds and B first in even ones (so that neither always runs on what the
# other warmed), after one warm-up round. Their times, in microseconds, go to DIR/A.us and DIR/B.us.
bench_alternate() {
    local rounds=$1 dir=$2 a=$3 b=$4 i first second t0 t1 t2
    "$a" >/dev/null
    "$b" >/dev/null
    : >"$dir/$a.us"
    : >"$dir/$b.us"
    for i in $(seq "$rounds"); do
        if [ $((i % 2)) -eq 1 ]; then first=$a second=$b; else first=$b second=$a; fi
        t0=$(date +%s%N)
        "$first" >/dev/null
        t1=$(date +%s%N)
        "$second" >/dev/null
        t2=$(date +%s%N)
        echo $(((t1 - t0) / 1000)) >>"$dir/$first.us"
        echo $(((t2 - t1) / 1000)) >>"$dir/$second.us"
    done
}

# bench_ms FILE: the times of FILE in whole ms, in the order measured.
bench_ms() {
    awk '{printf "%s%.0f", (NR > 1 ? " " : ""), $1/1000}' "$1"
}
