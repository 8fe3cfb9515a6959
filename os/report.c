/*
 * Diagnostics without allocation: a tiny formatter into caller buffers, the
 * fatal reporter used for misuse and corruption (backtraces: backtrace.c).
 */
#include "os/os.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct za_out {
	char *buf;
	size_t cap, len;
};

static void out_char(struct za_out *o, char c)
{
	if (o->len + 1 < o->cap)
		o->buf[o->len] = c;
	o->len++;
}

static void out_str(struct za_out *o, const char *s)
{
	if (!s)
		s = "(null)";
	while (*s)
		out_char(o, *s++);
}

static void out_pad(struct za_out *o, int width, int len)
{
	while (width-- > len)
		out_char(o, ' ');
}

static void out_num(struct za_out *o, unsigned long long v, unsigned base, int neg,
		    int width, int left)
{
	char tmp[24];
	int n = 0;
	do {
		tmp[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	if (!left)
		out_pad(o, width, n + neg);
	if (neg)
		out_char(o, '-');
	for (int i = n; i > 0; i--)
		out_char(o, tmp[i - 1]);
	if (left)
		out_pad(o, width, n + neg);
}

size_t za_vfmt(char *buf, size_t cap, const char *fmt, va_list ap)
{
	struct za_out o = { buf, cap, 0 };

	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			out_char(&o, *fmt);
			continue;
		}
		fmt++;
		int lng = 0, sz = 0, width = 0, left = 0;
		if (*fmt == '-') {
			left = 1;
			fmt++;
		}
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		while (*fmt == 'l') {
			lng++;
			fmt++;
		}
		if (*fmt == 'z') {
			sz = 1;
			fmt++;
		}
		switch (*fmt) {
		case 'd': {
			long long v = sz ? (long long)va_arg(ap, ssize_t)
			    : lng == 2 ? va_arg(ap, long long)
			    : lng == 1 ? va_arg(ap, long) : va_arg(ap, int);
			out_num(&o, v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v,
				10, v < 0, width, left);
			break;
		}
		case 'u':
		case 'x': {
			unsigned long long v = sz ? va_arg(ap, size_t)
			    : lng == 2 ? va_arg(ap, unsigned long long)
			    : lng == 1 ? va_arg(ap, unsigned long) : va_arg(ap, unsigned);
			out_num(&o, v, *fmt == 'x' ? 16 : 10, 0, width, left);
			break;
		}
		case 'p':
			out_str(&o, "0x");
			out_num(&o, (uintptr_t)va_arg(ap, void *), 16, 0, 0, 0);
			break;
		case 's': {
			const char *str = va_arg(ap, const char *);
			int len = (int)strlen(str ? str : "(null)");
			if (!left)
				out_pad(&o, width, len);
			out_str(&o, str);
			if (left)
				out_pad(&o, width, len);
			break;
		}
		case 'c':
			out_char(&o, (char)va_arg(ap, int));
			break;
		case '%':
			out_char(&o, '%');
			break;
		case '\0':
			fmt--;
			break;
		default:
			out_char(&o, '?');
			break;
		}
	}
	if (cap)
		buf[o.len < cap ? o.len : cap - 1] = '\0';
	return o.len < cap ? o.len : (cap ? cap - 1 : 0);
}

size_t za_fmt(char *buf, size_t cap, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	size_t n = za_vfmt(buf, cap, fmt, ap);
	va_end(ap);
	return n;
}

void za_dprintf(int fd, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	size_t n = za_vfmt(buf, sizeof buf, fmt, ap);
	va_end(ap);
	za_os_write(fd, buf, n);
}

bool za_misuse_warn;
_Atomic unsigned long za_misuse_count;

/* The report's line and backtrace. */
static void report(const char *fmt, va_list ap)
{
	char buf[512];
	size_t n = za_fmt(buf, sizeof buf, "zonealloc: ");
	n += za_vfmt(buf + n, sizeof buf - n - 1, fmt, ap);
	buf[n++] = '\n';
	za_os_write(2, buf, n);
	za_backtrace(2);
}

static __attribute__((noreturn)) void die(void)
{
	/* abort() could run atexit-free paths that allocate in odd libcs; a
	 * raised SIGABRT with the default action cannot. */
	signal(SIGABRT, SIG_DFL);
	raise(SIGABRT);
	abort();
}

void za_fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	report(fmt, ap);
	va_end(ap);
	die();
}

void za_misuse(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	report(fmt, ap);
	va_end(ap);
	if (!za_misuse_warn)
		die();
	atomic_fetch_add_explicit(&za_misuse_count, 1, memory_order_relaxed);
}

size_t za_fmt_path(char *buf, size_t cap, const char *pattern)
{
	size_t n = 0;
	for (const char *s = pattern; *s && n + 24 < cap; s++) {
		if (s[0] == '%' && s[1] == 'p') {
			n += za_fmt(buf + n, cap - n, "%d", (int)getpid());
			s++;
		} else {
			buf[n++] = *s;
		}
	}
	buf[n] = 0;
	return n;
}
