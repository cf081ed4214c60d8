; triple: prints a line, then makes every exception undeliverable (IDT limit
; 0) and raises one: #UD -> #GP -> #DF -> triple fault. QEMU with -no-reboot
; exits with status 0; vmmctl reports a triple-fault shutdown.
; ud2 rather than int3: this host's KVM instruction emulator cannot execute
; INT3 in protected mode (KVM internal error, emulation failure), while the
; #UD of ud2 is raised by the CPU itself and escalates as it should.

%include "boot.inc"
%include "rt32.inc"

main:
    PRINTLN "about to triple fault"
    lidt [empty_idt]
    ud2
    ; Not reached on a correct machine.
    PRINTLN "FAIL: still running after the triple fault"
    DEBUG_EXIT EXIT_CHECK_FAILED

empty_idt:
    dw 0
    dd 0

%include "serial.inc"
GUEST_END
