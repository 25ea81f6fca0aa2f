/* ACPI and MP-table readers for guests, as an OS walks them: scan the BIOS area for the RSDP,
   follow the XSDT (or RSDT) to a table by signature, check every checksum on the way. Header-only
   (static functions) so 64-bit tsvmm guests and 32-bit kut guests use the same code; it needs
   only <stdint.h> and reads physical memory through identity-mapped pointers.
   Layouts from ACPI 6.4 (5.2.5.3 RSDP, 5.2.6 header, 5.2.9 FADT, 5.2.12 MADT) and the Intel MP
   spec 1.4 (4.1 floating pointer, 4.2 configuration table header). */
#ifndef TSVMM_ACPI_H
#define TSVMM_ACPI_H

#include <stdint.h>

struct acpi_rsdp {
    char signature[8];
    uint8_t checksum;
    char oem_id[6];
    uint8_t revision;
    uint32_t rsdt;
    uint32_t length;
    uint64_t xsdt;
    uint8_t ext_checksum;
    uint8_t reserved[3];
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_rsdp) == 36, "RSDP is 36 bytes");

struct acpi_header {
    char signature[4];
    uint32_t length;
    uint8_t revision;
    uint8_t checksum;
    char oem_id[6];
    char oem_table_id[8];
    uint32_t oem_revision;
    uint32_t creator_id;
    uint32_t creator_revision;
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_header) == 36, "SDT header is 36 bytes");

/* The FADT up to X_DSDT (what these guests read). */
struct acpi_fadt {
    struct acpi_header h;
    uint32_t firmware_ctrl;     /* 36 */
    uint32_t dsdt;              /* 40 */
    uint8_t reserved0;          /* 44 */
    uint8_t preferred_pm_profile;
    uint16_t sci_int;           /* 46 */
    uint32_t smi_cmd;           /* 48 */
    uint8_t acpi_enable, acpi_disable, s4bios_req, pstate_cnt;
    uint32_t pm1a_evt_blk;      /* 56 */
    uint32_t pm1b_evt_blk;
    uint32_t pm1a_cnt_blk;      /* 64 */
    uint32_t pm1b_cnt_blk;
    uint32_t pm2_cnt_blk;
    uint32_t pm_tmr_blk;        /* 76 */
    uint32_t gpe0_blk, gpe1_blk;
    uint8_t pm1_evt_len, pm1_cnt_len, pm2_cnt_len, pm_tmr_len; /* 88 */
    uint8_t gpe0_blk_len, gpe1_blk_len, gpe1_base, cst_cnt;
    uint16_t p_lvl2_lat, p_lvl3_lat;
    uint16_t flush_size, flush_stride;
    uint8_t duty_offset, duty_width, day_alrm, mon_alrm, century;
    uint16_t iapc_boot_arch;    /* 109 */
    uint8_t reserved1;
    uint32_t flags;             /* 112 */
    uint8_t reset_reg[12];      /* 116 */
    uint8_t reset_value;        /* 128 */
    uint16_t arm_boot_arch;
    uint8_t minor_version;
    uint64_t x_firmware_ctrl;   /* 132 */
    uint64_t x_dsdt;            /* 140 */
} __attribute__((packed));
_Static_assert(__builtin_offsetof(struct acpi_fadt, pm1a_cnt_blk) == 64, "PM1a_CNT_BLK at 64");
_Static_assert(__builtin_offsetof(struct acpi_fadt, pm_tmr_blk) == 76, "PM_TMR_BLK at 76");
_Static_assert(__builtin_offsetof(struct acpi_fadt, flags) == 112, "FLAGS at 112");
_Static_assert(__builtin_offsetof(struct acpi_fadt, x_dsdt) == 140, "X_DSDT at 140");
#define ACPI_FADT_TMR_VAL_EXT (1u << 8)

struct acpi_madt {
    struct acpi_header h;
    uint32_t lapic_address;
    uint32_t flags;
} __attribute__((packed));
enum { MADT_LAPIC = 0, MADT_IOAPIC = 1, MADT_ISO = 2, MADT_LAPIC_NMI = 4, MADT_X2APIC = 9 };
struct madt_entry { uint8_t type, length; } __attribute__((packed));
struct madt_lapic { struct madt_entry e; uint8_t uid, apic_id; uint32_t flags; } __attribute__((packed));
struct madt_ioapic { struct madt_entry e; uint8_t id, reserved; uint32_t address, gsi_base; } __attribute__((packed));
struct madt_iso { struct madt_entry e; uint8_t bus, source; uint32_t gsi; uint16_t flags; } __attribute__((packed));
struct madt_x2apic { struct madt_entry e; uint16_t reserved; uint32_t x2apic_id, flags, uid; } __attribute__((packed));
_Static_assert(sizeof(struct madt_lapic) == 8 && sizeof(struct madt_ioapic) == 12 && sizeof(struct madt_iso) == 10 && sizeof(struct madt_x2apic) == 16, "MADT entry sizes");

#define ACPI_PTR(a) ((const void *)(uintptr_t)(a))

static inline int acpi_checksum_ok(const void *p, uint32_t len) {
    const uint8_t *b = (const uint8_t *)p;
    uint8_t s = 0;
    for (uint32_t i = 0; i < len; i++) s = (uint8_t)(s + b[i]);
    return s == 0;
}

static inline int acpi_sig_eq(const char *a, const char *b, int n) {
    for (int i = 0; i < n; i++) if (a[i] != b[i]) return 0;
    return 1;
}

/* The first valid RSDP on a 16-byte boundary in [0xE0000, 0x100000), or 0. */
static inline const struct acpi_rsdp *acpi_find_rsdp(void) {
    for (uintptr_t a = 0xE0000; a < 0x100000; a += 16) {
        const struct acpi_rsdp *r = (const struct acpi_rsdp *)a;
        if (!acpi_sig_eq(r->signature, "RSD PTR ", 8) || !acpi_checksum_ok(r, 20)) continue;
        if (r->revision >= 2 && (r->length < 36 || r->length > 4096 || !acpi_checksum_ok(r, r->length))) continue;
        return r;
    }
    return 0;
}

/* A table the XSDT (revision >= 2) or the RSDT lists, with a good checksum; 0 when absent. */
static inline const struct acpi_header *acpi_find_table(const struct acpi_rsdp *rsdp, const char *sig) {
    int wide = rsdp->revision >= 2 && rsdp->xsdt != 0;
    const struct acpi_header *root = (const struct acpi_header *)ACPI_PTR(wide ? rsdp->xsdt : rsdp->rsdt);
    if (!acpi_checksum_ok(root, root->length) || !acpi_sig_eq(root->signature, wide ? "XSDT" : "RSDT", 4)) return 0;
    uint32_t n = (root->length - (uint32_t)sizeof(*root)) / (wide ? 8u : 4u);
    const uint8_t *body = (const uint8_t *)(root + 1);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t a = 0;
        if (wide) {
            for (int k = 7; k >= 0; k--) a = (a << 8) | body[8 * i + (uint32_t)k];
        } else {
            for (int k = 3; k >= 0; k--) a = (a << 8) | body[4 * i + (uint32_t)k];
        }
        const struct acpi_header *t = (const struct acpi_header *)ACPI_PTR(a);
        if (acpi_sig_eq(t->signature, sig, 4) && acpi_checksum_ok(t, t->length)) return t;
    }
    return 0;
}

/* The DSDT the FADT points to (X_DSDT first), checked; 0 when absent or bad. */
static inline const struct acpi_header *acpi_dsdt(const struct acpi_fadt *f) {
    uint64_t a = f->h.length >= 148 && f->x_dsdt != 0 ? f->x_dsdt : f->dsdt;
    const struct acpi_header *d = (const struct acpi_header *)ACPI_PTR(a);
    if (a == 0 || !acpi_sig_eq(d->signature, "DSDT", 4) || !acpi_checksum_ok(d, d->length)) return 0;
    return d;
}

/* Occurrences of the n-byte string `s` in the table (e.g. "LNRO0005" in the DSDT). */
static inline uint32_t acpi_count(const struct acpi_header *t, const char *s, uint32_t n) {
    const char *b = (const char *)t;
    uint32_t hits = 0;
    for (uint32_t i = 0; i + n <= t->length; i++) if (acpi_sig_eq(b + i, s, (int)n)) hits++;
    return hits;
}

/* SLP_TYPa of \_S5 in the DSDT: the Package after the "_S5_" name, first element a
   ZeroOp/OneOp/BytePrefix integer. -1 when not found in that form. */
static inline int acpi_s5_sleep_type(const struct acpi_header *dsdt) {
    const uint8_t *b = (const uint8_t *)dsdt;
    for (uint32_t i = sizeof(*dsdt); i + 8 < dsdt->length; i++) {
        if (!acpi_sig_eq((const char *)b + i, "_S5_", 4)) continue;
        uint32_t p = i + 4;
        if (b[p] != 0x12) continue;                  /* PackageOp */
        p += 1 + (uint32_t)(b[p + 1] >> 6) + 1;      /* PkgLength: lead byte + follow-on bytes */
        p += 1;                                      /* NumElements */
        if (b[p] == 0x00) return 0;                  /* ZeroOp */
        if (b[p] == 0x01) return 1;                  /* OneOp */
        if (b[p] == 0x0A) return b[p + 1];           /* BytePrefix */
        return -1;
    }
    return -1;
}

/* ---- MP spec 1.4 ---- */
struct mp_floating {
    char signature[4]; /* "_MP_" */
    uint32_t config;
    uint8_t length;    /* in 16-byte units */
    uint8_t revision, checksum, feature1, feature2, feature[3];
} __attribute__((packed));
struct mp_config {
    char signature[4]; /* "PCMP" */
    uint16_t length;
    uint8_t revision, checksum;
    char oem[8], product[12];
    uint32_t oem_table, oem_table_size_count; /* pointer; then size (u16) and entry count (u16) */
    uint32_t lapic_address;
    uint16_t ext_length;
    uint8_t ext_checksum, reserved;
} __attribute__((packed));
_Static_assert(sizeof(struct mp_floating) == 16 && sizeof(struct mp_config) == 44, "MP table header sizes");

static inline const struct mp_floating *mp_find(uintptr_t start, uintptr_t end) {
    for (uintptr_t a = start; a + 16 <= end; a += 16) {
        const struct mp_floating *f = (const struct mp_floating *)a;
        if (acpi_sig_eq(f->signature, "_MP_", 4) && f->length == 1 && acpi_checksum_ok(f, 16)) return f;
    }
    return 0;
}

/* Processor entries (type 0, 20 bytes) of a checked configuration table; -1 if it is bad. */
static inline int mp_processor_count(const struct mp_floating *f) {
    const struct mp_config *c = (const struct mp_config *)ACPI_PTR(f->config);
    if (f->config == 0 || !acpi_sig_eq(c->signature, "PCMP", 4) || !acpi_checksum_ok(c, c->length)) return -1;
    const uint8_t *e = (const uint8_t *)(c + 1);
    const uint8_t *end = (const uint8_t *)c + c->length;
    int cpus = 0;
    while (e < end) {
        if (*e == 0) {
            cpus++;
            e += 20;
        } else {
            e += 8;
        }
    }
    return cpus;
}

#endif
