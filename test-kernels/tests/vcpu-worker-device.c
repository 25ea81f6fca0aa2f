/* vcpu-worker-device: every vCPU takes tickets from one device, which the VMM may run on the
 * vCPUs' own threads (VmmBuilder.vcpuWorkers): IN from port 0x520 hands out the next ticket, OUT
 * to port 0x521 hands it back for the device to add up. Reports how many it took and whether each
 * was above the one before (a device shared by vCPUs never goes back in time for one of them). */
#include "tsvmm.h"

#define TICKETS 50000

int test_main(void) {
    u32 last = 0;
    u64 rising = 1;
    for (u32 i = 0; i < TICKETS; i++) {
        u32 t = inl(0x520);
        if (i > 0 && t <= last) rising = 0;
        last = t;
        outl(0x521, t);
    }
    report_value("tickets", TICKETS);
    report_value("rising", rising);
    return 0;
}
