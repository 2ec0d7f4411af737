#!/usr/bin/env bash
# The patches in patches/<series>/ are `git format-patch` output against the
# pinned QEMU release.  This script moves them between that form and a git
# repository, which is how they are edited and ported (docs/porting.rst):
#
#   regen-patches.sh export DIR   DIR := git repo: the pristine QEMU tree as
#                                 the commit tagged vsched-base, then one
#                                 commit per patch
#   regen-patches.sh import DIR   patches/<series>/ := format-patch of
#                                 vsched-base..HEAD in DIR (replaces them)
#   regen-patches.sh check        export + import into a scratch directory:
#                                 fails if the patches are not canonical
#
# The output is reproducible (fixed author, dates and From line), so a
# changed patch shows as a small diff in review.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/qemu-pin.sh"
patches=$top/patches/$QEMU_SERIES
pristine=${VSCHED_QEMU_PRISTINE:-$top/build/qemu-pristine}
DATE="2026-01-01T00:00:00Z"

die() { echo "regen-patches: $*" >&2; exit 1; }

git_fixed() {  # reproducible commits: fixed identity and dates
    GIT_AUTHOR_NAME="vsched developers" GIT_AUTHOR_EMAIL=vsched@invalid \
    GIT_COMMITTER_NAME="vsched developers" GIT_COMMITTER_EMAIL=vsched@invalid \
    GIT_AUTHOR_DATE=$DATE GIT_COMMITTER_DATE=$DATE git "$@"
}

# The pristine files the patches touch (a scratch export needs no more).
touched_files() {
    sed -n 's#^+++ b/##p' "$patches"/*.patch | sort -u
}

export_repo() {  # dir [touched-only]
    local dir=$1 p work f
    [ -f "$pristine/VERSION" ] || die "no QEMU tree at $pristine (run make, or set VSCHED_QEMU_PRISTINE)"
    [ ! -e "$dir" ] || die "$dir exists; give a new directory"
    if [ "${2:-}" = touched-only ]; then
        mkdir -p "$dir"
        cp "$pristine/VERSION" "$dir/"
        for f in $(touched_files); do
            mkdir -p "$dir/$(dirname "$f")"
            [ ! -f "$pristine/$f" ] || cp "$pristine/$f" "$dir/$f"
        done
    else
        cp -r --no-preserve=ownership "$pristine" "$dir"
    fi
    work=$(mktemp -d)
    trap 'rm -rf "$work"' RETURN
    git_fixed -C "$dir" init -q
    git_fixed -C "$dir" add -A -f
    git_fixed -C "$dir" commit -q --no-verify -m "QEMU $(cat "$pristine/VERSION") (pristine)"
    git -C "$dir" tag vsched-base
    for p in "$patches"/*.patch; do
        git mailinfo "$work/msg" "$work/diff" < "$p" > "$work/info" ||
            die "$(basename "$p"): not a patch git can read"
        patch -s -p1 -N -d "$dir" < "$work/diff" ||
            die "$(basename "$p") does not apply to QEMU $(cat "$pristine/VERSION")"
        { sed -n 's/^Subject: //p' "$work/info"; echo; cat "$work/msg"; } > "$work/commit"
        git_fixed -C "$dir" add -A -f
        git_fixed -C "$dir" commit -q --no-verify -F "$work/commit"
    done
}

import_repo() {  # dir outdir
    local dir=$1 out=$2
    git -C "$dir" rev-parse -q --verify vsched-base >/dev/null ||
        die "$dir has no tag vsched-base (make it with: regen-patches.sh export DIR)"
    rm -f "$out"/*.patch
    git -C "$dir" -c core.abbrev=12 -c diff.noprefix=false -c diff.mnemonicPrefix=false \
        format-patch -q --zero-commit --no-signature --no-numbered --no-stat \
        --no-renames -o "$out" vsched-base..HEAD >/dev/null
}

case ${1:-} in
export)
    [ $# -eq 2 ] || die "usage: regen-patches.sh export DIR"
    export_repo "$2"
    echo "regen-patches: $(ls "$patches"/*.patch | wc -l) patches as commits in $2 (base: tag vsched-base)"
    ;;
import)
    [ $# -eq 2 ] || die "usage: regen-patches.sh import DIR"
    import_repo "$2" "$patches"
    echo "regen-patches: wrote $(ls "$patches"/*.patch | wc -l) patches to $patches"
    ;;
check)
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    export_repo "$scratch/tree" touched-only
    mkdir "$scratch/out"
    import_repo "$scratch/tree" "$scratch/out"
    # Blob ids, hunk positions and context lines follow the QEMU point
    # release the tree came from (any 10.0.x): compare the rest.
    for d in "$patches" "$scratch/out"; do
        mkdir -p "$scratch/cmp/$(basename "$d")"
        for p in "$d"/*.patch; do
            grep -Ev '^(index |@@ | )' "$p" > "$scratch/cmp/$(basename "$d")/$(basename "$p")" || true
        done
    done
    if ! diff -r "$scratch/cmp/$(basename "$patches")" "$scratch/cmp/out" > "$scratch/diff"; then
        head -40 "$scratch/diff" >&2
        die "patches/$QEMU_SERIES is not canonical format-patch output; run: scripts/regen-patches.sh export DIR && scripts/regen-patches.sh import DIR"
    fi
    echo "regen-patches: $(ls "$patches"/*.patch | wc -l) patches are canonical"
    ;;
*)
    die "usage: regen-patches.sh export DIR | import DIR | check"
    ;;
esac
