#!/bin/sh
# vips: a pipeline shaped like PARSEC 3.0's vips benchmark, with Debian's
# libvips-tools (8.14). PARSEC runs "vips im_benchmark in.v out.v" with
# IM_CONCURRENCY=$NTHREADS: one fused, demand-driven chain over a LabQ image
# (LabQ->Lab, affine shrink, Lab->XYZ, colour recombination, XYZ->Lab,
# ifthenelse, sharpen, back to LabQ/sRGB). libvips 8.14 still carries that
# chain as the vips7 operation im_benchmarkn, which is what runs here, with
# VIPS_CONCURRENCY set to the thread count as PARSEC does.
#
# The input is generated in the guest (not timed): three Perlin-noise bands
# (seeds 1..3) joined into an sRGB image and converted to LabQ, stored in /tmp.
# Only the benchmark chain is the region of interest (roi_seconds). The output
# image's width, height and bands are checked against the input's (the chain
# scales back to the input size): size_check=ok, else the workload fails.
#
# usage: vips [-t THREADS] [-s small|large] [-W WIDTH] [-H HEIGHT] [-n CHAINS]
#   small: 800x1200 (about simsmall's 1600x1200 halved), large: 2662x5500
#   (simlarge's bigben_2662x5500.v)
set -u

# busy: the CPU ticks (USER_HZ, 100 a second) all CPUs spent busy so far
# (user, nice, system, irq, softirq), without a fork: the ROI's busy CPU
# time is what the N-VM ceiling needs (docs/results/README.rst).
busy_ticks() {
    read -r _ u n s _ _ q sq _ < /proc/stat
    busy=$((u + n + s + q + sq))
}
VIPS=/usr/lib/vsched-vips/vips
threads=${VSCHED_THREADS:-$(nproc)}
size=${VSCHED_SIZE:-small}
W= H= N=1
while getopts "t:s:W:H:n:h" o; do
    case "$o" in
    t) threads=$OPTARG ;;
    s) size=$OPTARG ;;
    W) W=$OPTARG ;;
    H) H=$OPTARG ;;
    n) N=$OPTARG ;;
    *) echo "usage: vips [-t THREADS] [-s small|large] [-W WIDTH] [-H HEIGHT] [-n CHAINS]"
       [ "$o" = h ] && exit 0; exit 2 ;;
    esac
done
case "$size" in
small) : "${W:=800}" "${H:=1200}" ;;
large) : "${W:=2662}" "${H:=5500}" ;;
*) echo "vips: unknown size '$size' (small|large)" >&2; exit 2 ;;
esac
[ -x "$VIPS" ] || { echo "vips: $VIPS missing from the image" >&2; exit 1; }

export VIPS_CONCURRENCY=$threads IM_CONCURRENCY=$threads
# no operation cache across the chain, no disc temporaries
export VIPS_DISC_THRESHOLD=4g
d=/tmp/vips
mkdir -p $d
t0=$(vsched-clock)
for b in 1 2 3; do
    $VIPS perlin $d/b$b.v "$W" "$H" --cell-size $((32 + 16 * b)) --uchar --seed $b || exit 1
done
$VIPS bandjoin "$d/b1.v $d/b2.v $d/b3.v" $d/rgb.v || exit 1
$VIPS copy $d/rgb.v $d/srgb.v --interpretation srgb || exit 1
$VIPS colourspace $d/srgb.v $d/in.v labq || exit 1
rm -f $d/b1.v $d/b2.v $d/b3.v $d/rgb.v $d/srgb.v
busy_ticks
busy1=$busy
t1=$(vsched-clock)
echo "vips: input ${W}x${H} LabQ generated in $(( (t1 - t0) / 1000000 )) ms; im_benchmarkn x$N, VIPS_CONCURRENCY=$threads"

$VIPS im_benchmarkn $d/in.v $d/out.v "$N"
rc=$?
t2=$(vsched-clock)
roi_ns=$((t2 - t1))
busy_ticks
busy_cs=$((busy - busy1))

ow=$($VIPS im_header_int Xsize $d/out.v 2>/dev/null || true)
oh=$($VIPS im_header_int Ysize $d/out.v 2>/dev/null || true)
ob=$($VIPS im_header_int Bands $d/out.v 2>/dev/null || true)
check=FAIL
[ "$rc" = 0 ] && [ "$ow" = "$W" ] && [ "$oh" = "$H" ] && [ "$ob" = 3 ] && check=ok
echo "vips: output ${ow}x${oh}x${ob} (expected ${W}x${H}x3): $check"
printf 'VSCHED-KV roi_seconds=%d.%06d gen_seconds=%d.%03d in_width=%s in_height=%s out_width=%s out_height=%s out_bands=%s vips_threads=%s chains=%s roi_busy_seconds=%d.%02d size_check=%s\n' \
    $((roi_ns / 1000000000)) $(((roi_ns % 1000000000) / 1000)) \
    $(((t1 - t0) / 1000000000)) $((((t1 - t0) % 1000000000) / 1000000)) \
    "$W" "$H" "${ow:-0}" "${oh:-0}" "${ob:-0}" "$threads" "$N" \
    $((busy_cs / 100)) $((busy_cs % 100)) "$check"
rm -f $d/in.v $d/out.v
[ "$rc" = 0 ] || exit "$rc"
[ "$check" = ok ] || exit 3
exit 0
