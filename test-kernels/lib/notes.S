/* ELF notes telling a loader how to start this guest (see README "Boot contract").
   BOOT_MODE: 0 real16, 1 prot32, 2 long64. PVH_ENTRY, if defined, also emits Xen's
   XEN_ELFNOTE_PHYS32_ENTRY so a standard PVH loader can boot a prot32 guest. */
    .section .note.tsvmm, "a", @note
    .balign 4
    .long 2f - 1f          /* namesz */
    .long 4f - 3f          /* descsz */
    .long 1                /* type: TSVMM_NOTE_BOOT_MODE */
1:  .asciz "tsvmm"
2:  .balign 4
3:  .long BOOT_MODE
4:  .balign 4

#ifdef PVH_ENTRY
    .section .note.Xen, "a", @note
    .balign 4
    .long 2f - 1f
    .long 4f - 3f
    .long 18               /* XEN_ELFNOTE_PHYS32_ENTRY */
1:  .asciz "Xen"
2:  .balign 4
3:  .long PVH_ENTRY
4:  .balign 4
#endif
