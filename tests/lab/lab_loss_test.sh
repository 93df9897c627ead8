#!/usr/bin/env bash
# Loss: 10% per packet, fixed seed (so a failure can be replayed).
# 1) A->B only: ping loss = one-way loss. n = 1000, p = 0.10, sd = 0.0095:
#    accept [0.06, 0.14] (> 4 sd). And the emulator must have dropped
#    exactly the echo requests ping missed (no other traffic in the lab).
# 2) Both ways: round-trip loss = 1 - 0.9^2 = 0.19, sd = 0.0124: [0.14, 0.24].
source "$(dirname "$0")/lab_lib.sh"
SEED=424242
lab_up l --delay-ms 1 --rate-mbit 100 --seed "$SEED"
note "seed $SEED"

ping_loss() {  # -> lost sent
  ip netns exec "$NS_A" ping -n -q -c 1000 -i 0.003 -W 1 "$IP_B" | awk '/packets transmitted/ {print $1 - $4, $1}'
}

wanem_ctl set ab.loss=0.10 >/dev/null
wanem_ctl reset-stats >/dev/null
read -r lost sent <<<"$(ping_loss)"
dropped="$(counter a_to_b dropped_loss_packets)"
frac="$(awk "BEGIN {print $lost / $sent}")"
note "one-way 10%: ping lost $lost of $sent ($frac); emulator dropped $dropped"
check "$sent == 1000" "ping sent 1000"
check "$frac >= 0.06 && $frac <= 0.14" "one-way loss $frac in [0.06, 0.14]"
check "$dropped == $lost" "emulator's dropped_loss_packets ($dropped) == ping's losses ($lost)"
check "$(counter b_to_a dropped_loss_packets) == 0" "no loss b_to_a when only ab.loss is set"

wanem_ctl set loss=10% >/dev/null
read -r lost sent <<<"$(ping_loss)"
frac="$(awk "BEGIN {print $lost / $sent}")"
note "10% both ways: ping lost $lost of $sent ($frac), expected 0.19"
check "$frac >= 0.14 && $frac <= 0.24" "round-trip loss $frac in [0.14, 0.24]"
