/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Loads the program in section "socket" of a BPF ELF object (as built by
 * clang -target bpf) as a BPF_PROG_TYPE_SOCKET_FILTER program. Enough for
 * programs without maps or relocations, like the KCM parsers here.
 */
#ifndef BPF_ELF_LOAD_H
#define BPF_ELF_LOAD_H

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/bpf.h>

static int bpf_elf_load_socket_filter(const char *path)
{
	static char log[16384];
	const Elf64_Ehdr *eh;
	const Elf64_Shdr *sh;
	const char *names;
	union bpf_attr attr;
	struct stat st;
	char *img;
	int fd, prog = -1;

	fd = open(path, O_RDONLY);
	if (fd < 0 || fstat(fd, &st))
		return -1;
	img = malloc(st.st_size);
	if (!img || read(fd, img, st.st_size) != st.st_size) {
		close(fd);
		free(img);
		return -1;
	}
	close(fd);
	eh = (const Elf64_Ehdr *)img;
	if (memcmp(eh->e_ident, ELFMAG, SELFMAG) || eh->e_machine != EM_BPF ||
	    eh->e_shoff + (size_t)eh->e_shnum * sizeof(*sh) > (size_t)st.st_size) {
		errno = ENOEXEC;
		free(img);
		return -1;
	}
	sh = (const Elf64_Shdr *)(img + eh->e_shoff);
	names = img + sh[eh->e_shstrndx].sh_offset;
	for (int i = 0; i < eh->e_shnum; i++) {
		if (strcmp(names + sh[i].sh_name, "socket"))
			continue;
		memset(&attr, 0, sizeof(attr));
		attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
		attr.insns = (unsigned long)(img + sh[i].sh_offset);
		attr.insn_cnt = sh[i].sh_size / sizeof(struct bpf_insn);
		attr.license = (unsigned long)"GPL";
		attr.log_buf = (unsigned long)log;
		attr.log_size = sizeof(log);
		attr.log_level = 1;
		prog = syscall(__NR_bpf, BPF_PROG_LOAD, &attr, sizeof(attr));
		if (prog < 0)
			fprintf(stderr, "BPF_PROG_LOAD: %s\n%s\n", strerror(errno), log);
		break;
	}
	free(img);
	return prog;
}

#endif /* BPF_ELF_LOAD_H */
