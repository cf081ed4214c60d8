; spin: a guest that never halts and never exits: after one line it spins
; with interrupts off, so only the host can take the vCPU back (the load
; tests check that status and stop still answer at once).

%include "boot.inc"
%include "rt32.inc"

main:
    PRINTLN "spin guest"
    cli
.spin:
    jmp .spin

%include "serial.inc"
GUEST_END
