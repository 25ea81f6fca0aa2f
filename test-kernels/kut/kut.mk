# Multiboot guests in kvm-unit-tests' x86 shape (kut/): out/kut/<name>.flat, ELF32 like the
# suite's own .flat files. Included from ../Makefile; `make -C test-kernels kut` builds only these.
KUT_TESTS := $(basename $(notdir $(wildcard kut/tests/*.c)))
KUT_OUT   := $(OUT)/kut
KUT_FLAGS := $(FLAGS_32) -Ikut/lib
KUT_LIB   := $(KUT_OUT)/obj/entry.o $(KUT_OUT)/obj/kut.o

all: kut
kut: $(KUT_TESTS:%=$(KUT_OUT)/%.flat)
.PHONY: kut

$(KUT_OUT)/obj/%.o: kut/lib/%.c | $(KUT_OUT)/obj
	$(CC) $(KUT_FLAGS) -c $< -o $@
$(KUT_OUT)/obj/%.o: kut/lib/%.S | $(KUT_OUT)/obj
	$(CC) $(KUT_FLAGS) -c $< -o $@
$(KUT_OUT)/obj/t-%.o: kut/tests/%.c | $(KUT_OUT)/obj
	$(CC) $(KUT_FLAGS) -c $< -o $@
$(KUT_OUT)/%.flat: $(KUT_LIB) $(KUT_OUT)/obj/t-%.o kut/link.ld
	$(LD) -m elf_i386 -nostdlib -static --no-warn-rwx-segments -z noexecstack -z max-page-size=4096 \
	    --build-id=none -T kut/link.ld -o $@ $(filter %.o,$^)

$(KUT_OUT)/obj:
	@mkdir -p $@

-include $(wildcard $(KUT_OUT)/obj/*.d)
