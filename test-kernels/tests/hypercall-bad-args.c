/* hypercall-bad-args: malformed calls get error codes and the VMM keeps running. */
#include "tsvmm.h"

static struct tsvmm_hc blk;
static u8 misaligned_store[64] __attribute__((aligned(8)));

static i64 raw(u32 magic, u16 version, u16 call, u64 a0, u64 a1, u64 a2) {
    blk.magic = magic;
    blk.version = version;
    blk.call = call;
    blk.arg[0] = a0;
    blk.arg[1] = a1;
    blk.arg[2] = a2;
    blk.arg[3] = 0;
    blk.result = 12345;
    hypercall_raw(&blk);
    return blk.result;
}

int test_main(void) {
    static const char name[] = "x";
    report_value("unknown-call", (u64)hypercall(99, 0, 0, 0));
    report_value("console-bad-pointer", (u64)hypercall(HC_CALL_CONSOLE_WRITE, 0x7FFFFFF000ull, 16, 0));
    report_value("console-too-long", (u64)hypercall(HC_CALL_CONSOLE_WRITE, 0x100000, 65537, 0));
    report_value("report-name-too-long", (u64)hypercall(HC_CALL_REPORT, (u64)name, 257, 1));
    report_value("report-bad-pass", (u64)hypercall(HC_CALL_REPORT, (u64)name, 1, 2));
    report_value("exit-code-too-big", (u64)hypercall(HC_CALL_EXIT, 256, 0, 0));
    report_value("version-zero", (u64)hypercall(HC_CALL_VERSION, 0, 0, 0));
    report_value("version-future", (u64)hypercall(HC_CALL_VERSION, 7, 0, 0));
    report_value("wrong-block-version", (u64)raw(HC_MAGIC, 7, HC_CALL_CONSOLE_WRITE, (u64)name, 1, 0));
    i64 untouched = raw(0x12345678, 1, HC_CALL_CONSOLE_WRITE, (u64)name, 1, 0);
    report_value("bad-magic-status", (u64)(i64)hc_status());
    report_value("bad-magic-result-untouched", (u64)untouched);
    outl(HC_PORT, (u32)(u64)(misaligned_store + 4));
    report_value("misaligned-status", (u64)(i64)hc_status());
    outl(HC_PORT, 0xFFFFFFF8u);
    report_value("outside-ram-status", (u64)(i64)hc_status());
    outw(HC_PORT, 0x1234);
    report_value("word-doorbell-status", (u64)(i64)hc_status());
    report_value("ok-after-all", (u64)hypercall(HC_CALL_CONSOLE_WRITE, (u64)name, 1, 0));
    return 0;
}
