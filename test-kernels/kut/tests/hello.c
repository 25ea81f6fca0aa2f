/* hello: the smallest guest of the suite's shape. Proves the Multiboot hand-over (EAX magic,
   EBX info with memory sizes, loader name, command line) and the exit convention: with
   "exit=N" on the command line it ends with exit(N) straight away, so the VMM's process status
   must be (N << 1 | 1) & 0xff. */
#include "kut.h"

static int parse_exit(const char *s, int *code) {
    for (; *s; s++) {
        if (s[0] == 'e' && s[1] == 'x' && s[2] == 'i' && s[3] == 't' && s[4] == '=') {
            int v = 0;
            for (s += 5; *s >= '0' && *s <= '9'; s++) v = v * 10 + (*s - '0');
            *code = v;
            return 1;
        }
    }
    return 0;
}

int kut_main(void) {
    printf("kut hello: magic 0x%08x info 0x%x\n", mb_magic, (u32)mb_info);
    report(mb_magic == MB_BOOTLOADER_MAGIC, "EAX = 0x2badb002 at entry");
    report(mb_info != 0 && (mb_info->flags & MB_INFO_MEMORY) != 0, "EBX points at an info structure with memory sizes");
    if (mb_info->flags & MB_INFO_LOADER_NAME) printf("loader: %s\n", (const char *)mb_info->boot_loader_name);
    const char *cmd = (mb_info->flags & MB_INFO_CMDLINE) ? (const char *)mb_info->cmdline : "";
    printf("cmdline: [%s]\n", cmd);
    int code;
    if (parse_exit(cmd, &code)) {
        printf("exiting with %d\n", code);
        exit(code);
    }
    return report_summary();
}
