#!/usr/bin/env bash
# benchmark in cryptsetup 2.6.1's format, on cryptmap's engines: the PBKDF lines have the shape
# cryptsetup prints on this machine (numbers aside; the rates of both are printed, never
# compared: no timed assertions); the cipher table (which cryptsetup cannot measure here: no
# AF_ALG) has cryptsetup's header and column layout, with non-zero speeds; --cipher prints one line, an
# unknown cipher is refused with cryptsetup's words.
source "$(dirname "$0")/lib.sh"
shape() { sed -E 's/[0-9]+(\.[0-9])?/N/g; s/ +/ /g'; }

for h in sha256 ripemd160; do
  cryptsetup benchmark --pbkdf pbkdf2 --hash "$h" > "$T/cs"
  cm benchmark --pbkdf pbkdf2 --hash "$h" > "$T/cm"
  # the same text with the numbers masked (field widths included: %7u pads to the same column)
  diff <(sed -E 's/[0-9]+ iterations/N iterations/' "$T/cs") <(sed -E 's/[0-9]+ iterations/N iterations/' "$T/cm") ||
    fail "PBKDF2-$h line differs from cryptsetup's"
  cs=$(awk '/iterations per second/ {print $2}' "$T/cs")
  cmv=$(awk '/iterations per second/ {print $2}' "$T/cm")
  note "PBKDF2-$h: cryptmap $cmv, cryptsetup $cs iterations per second"
done
args=(--pbkdf argon2id --pbkdf-memory 32768 --iter-time 200 --pbkdf-parallel 1)
diff <(cryptsetup benchmark "${args[@]}" | shape) <(cm benchmark "${args[@]}" | shape) ||
  fail "argon2id line differs from cryptsetup's"

cm benchmark --cipher aes-xts-plain64 --key-size 512 > "$T/cm"
cat "$T/cm"
[[ $(wc -l < "$T/cm") == 3 ]] || fail "--cipher prints more than one line"
sed -n 2p "$T/cm" | grep -qx '# Algorithm |       Key |      Encryption |      Decryption' || fail "header"
sed -n 3p "$T/cm" | grep -Eqx '    aes-xts        512b +[0-9]+\.[0-9] MiB/s +[0-9]+\.[0-9] MiB/s' || fail "aes-xts line"
awk 'NR == 3 && ($3 <= 0 || $5 <= 0) {exit 1}' "$T/cm" || fail "aes-xts measured no speed"
cm benchmark --cipher serpent-cbc-essiv:sha256 | sed -n 3p | grep -Eqx 'serpent-cbc        256b +[0-9]+\.[0-9] MiB/s +[0-9]+\.[0-9] MiB/s' ||
  fail "serpent-cbc line"
expect_exit 1 "^Cipher foo-xts-plain64 \(with 256 bits key\) is not available." -- cm benchmark --cipher foo-xts-plain64

note "the whole run (Argon2 kept small)"
cm benchmark --pbkdf-memory 32768 --iter-time 100 > "$T/all"
cat "$T/all"
cat > "$T/want" <<'W'
# Tests are approximate using memory only (no storage IO).
PBKDFN-shaN N iterations per second for N-bit key
PBKDFN-shaN N iterations per second for N-bit key
PBKDFN-shaN N iterations per second for N-bit key
PBKDFN-ripemdN N iterations per second for N-bit key
PBKDFN-whirlpool N iterations per second for N-bit key
argonNi N iterations, N memory, N parallel threads (CPUs) for N-bit key (requested N ms time)
argonNid N iterations, N memory, N parallel threads (CPUs) for N-bit key (requested N ms time)
# Algorithm | Key | Encryption | Decryption
 aes-cbc Nb N MiB/s N MiB/s
 serpent-cbc Nb N MiB/s N MiB/s
 twofish-cbc Nb N MiB/s N MiB/s
 aes-cbc Nb N MiB/s N MiB/s
 serpent-cbc Nb N MiB/s N MiB/s
 twofish-cbc Nb N MiB/s N MiB/s
 aes-xts Nb N MiB/s N MiB/s
 serpent-xts Nb N MiB/s N MiB/s
 twofish-xts Nb N MiB/s N MiB/s
 aes-xts Nb N MiB/s N MiB/s
 serpent-xts Nb N MiB/s N MiB/s
 twofish-xts Nb N MiB/s N MiB/s
W
diff "$T/want" <(shape < "$T/all") || fail "the full benchmark is not cryptsetup's layout"
awk '/MiB\/s/ {print $1, $2}' "$T/all" | tr '\n' ' ' | grep -q "aes-cbc 128b serpent-cbc 128b twofish-cbc 128b aes-cbc 256b serpent-cbc 256b twofish-cbc 256b aes-xts 256b serpent-xts 256b twofish-xts 256b aes-xts 512b serpent-xts 512b twofish-xts 512b" ||
  fail "cipher rows or key sizes not cryptsetup's"
echo "PASS"
