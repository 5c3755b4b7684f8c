#!/usr/bin/env bash
# qemu's LUKS driver (qemu-img, userspace) as a second independent LUKS1 reader and writer:
#  - an image qemu-img formats and fills opens in cryptmap with the same plaintext (its payload
#    offset, 4040 sectors, is not 4 KiB-aligned: the store's unaligned path);
#  - what cryptmap writes into that image, and into a LUKS1 image cryptmap formats itself,
#    reads back identically through qemu-img;
#  - cryptmap's LUKS1 image passes cryptsetup's and cryptmap's --test-passphrase.
source "$(dirname "$0")/lib.sh"
K=$(keyfile key "qemu interop")
MiB=$((1 << 20))
command -v qemu-img >/dev/null || fail "qemu-img missing (Debian qemu-utils)"
qsecret=(--object "secret,id=sec0,file=$K")

qemu_read() {  # qemu_read IMG OUT
  qemu-img convert "${qsecret[@]}" --image-opts "driver=luks,key-secret=sec0,file.filename=$1" -O raw "$2"
}

note "qemu-img formats and writes, cryptmap reads"
# qemu-img times its PBKDF2 by the thread's CPU time and gives up ("Unable to get accurate CPU
# usage") when a heavily loaded machine leaves it none in the window: try again, a few times.
for try in 1 2 3 4 5; do
  qemu-img create -f luks "${qsecret[@]}" -o key-secret=sec0,cipher-alg=aes-256,cipher-mode=xts,ivgen-alg=plain64,hash-alg=sha256,iter-time=10 \
    "$T/q.img" 16M > /dev/null && break
  ((try < 5)) || fail "qemu-img create failed 5 times"
  sleep 1
done
pattern_write "$T/plain.raw" 0 $((16 * MiB)) 31
qemu-img convert -n -f raw "${qsecret[@]}" --target-image-opts "$T/plain.raw" "driver=luks,key-secret=sec0,file.filename=$T/q.img"
cm_open "$T/q.img" q --key-file "$K" --type luks1
[[ $(stat -c %s "$MNT/q") == $((16 * MiB)) ]] || fail "size of the qemu-made volume: $(stat -c %s "$MNT/q")"
pattern_check "$MNT/q" 0 $((16 * MiB)) 31 || fail "cryptmap misreads what qemu wrote"

note "cryptmap writes into qemu's image, qemu-img reads"
pattern_write "$MNT/q" $((4 * MiB)) $((2 * MiB)) 32
cm_close q
qemu_read "$T/q.img" "$T/out.raw"
pattern_check "$T/out.raw" 0 $((4 * MiB)) 31 || fail "qemu reads a changed head"
pattern_check "$T/out.raw" $((4 * MiB)) $((2 * MiB)) 32 || fail "qemu does not read what cryptmap wrote"
pattern_check "$T/out.raw" $((6 * MiB)) $((10 * MiB)) 31 || fail "qemu reads a changed tail"

note "cryptmap formats LUKS1 and writes, qemu-img and cryptsetup read"
truncate -s $((18 * MiB)) "$T/c.img"
cm luksFormat --batch-mode --type luks1 --pbkdf-force-iterations 1000 "$T/c.img" "$K"
cryptsetup isLuks --type luks1 "$T/c.img" || fail "cryptsetup does not see LUKS1"
cryptsetup open --test-passphrase --key-file "$K" "$T/c.img" || fail "cryptsetup rejects the passphrase"
cm open --test-passphrase "$T/c.img" --key-file "$K" || fail "cryptmap --test-passphrase rejects the right passphrase"
if cm open --test-passphrase "$T/c.img" --key-file "$T/plain.raw" 2>/dev/null; then
  fail "cryptmap --test-passphrase accepted a wrong passphrase"
fi
mountpoint -q "$MNT" && fail "--test-passphrase mounted something"
cm_open "$T/c.img" c --key-file "$K"
size=$(stat -c %s "$MNT/c")
pattern_write "$MNT/c" 0 "$size" 33
cm_close c
qemu_read "$T/c.img" "$T/c.raw"
pattern_check "$T/c.raw" 0 "$size" 33 || fail "qemu misreads cryptmap's LUKS1 image"
echo "PASS"
