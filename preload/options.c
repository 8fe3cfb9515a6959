/*
 * Options. Values accept 1/0, on/off, true/false, yes/no and plain numbers
 * with K, M or G suffixes (powers of 1024).
 */
#include "preload/options.h"

#include <string.h>

#include "os/os.h"

extern char **environ;

struct za_option_desc {
	const char *name;      /* after the ZONEALLOC_ prefix */
	long long value;       /* the default until parsed */
	const char *words[3];  /* for a choice: the words, valued 0, 1, 2 */
};

static struct za_option_desc options[ZA_OPT_COUNT] = {
	[ZA_OPT_STATS] = { "STATS", 0, { 0 } },
	[ZA_OPT_CHECK] = { "CHECK", 0, { 0 } },
	[ZA_OPT_LIMIT] = { "LIMIT", 0, { 0 } },
	[ZA_OPT_DECAY_MS] = { "DECAY_MS", 1000, { 0 } },
	[ZA_OPT_RECLAIM] = { "RECLAIM", 0, { "dontneed", "free", 0 } },
	[ZA_OPT_BACKGROUND] = { "BACKGROUND", 0, { 0 } },
};

static bool parse_choice(const struct za_option_desc *o, const char *s, long long *out)
{
	for (int i = 0; i < 3 && o->words[i]; i++)
		if (!strcasecmp(s, o->words[i])) {
			*out = i;
			return true;
		}
	return false;
}

static bool parse_value(const char *s, long long *out)
{
	static const struct { const char *word; long long v; } words[] = {
		{ "on", 1 }, { "true", 1 }, { "yes", 1 },
		{ "off", 0 }, { "false", 0 }, { "no", 0 },
	};
	for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
		if (!strcasecmp(s, words[i].word)) {
			*out = words[i].v;
			return true;
		}
	if (*s < '0' || *s > '9')
		return false;
	long long v = 0;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (v > (1LL << 53))
			return false;
		v = v * 10 + (*s - '0');
	}
	int shift = 0;
	switch (*s) {
	case 'k': case 'K': shift = 10; s++; break;
	case 'm': case 'M': shift = 20; s++; break;
	case 'g': case 'G': shift = 30; s++; break;
	}
	if (*s == 'b' || *s == 'B')
		s++;
	if (*s || v > (1LL << (62 - shift)))
		return false;
	*out = v << shift;
	return true;
}

void za_options_init(void)
{
	static const char prefix[] = "ZONEALLOC_";
	if (!environ)
		return;
	for (char **e = environ; *e; e++) {
		if (strncmp(*e, prefix, sizeof prefix - 1))
			continue;
		const char *name = *e + sizeof prefix - 1;
		const char *eq = strchr(name, '=');
		if (!eq)
			continue;
		size_t len = (size_t)(eq - name);
		bool known = false;
		for (int i = 0; i < ZA_OPT_COUNT; i++) {
			if (strlen(options[i].name) != len || strncmp(name, options[i].name, len))
				continue;
			known = true;
			bool ok = options[i].words[0] ? parse_choice(&options[i], eq + 1, &options[i].value)
						      : parse_value(eq + 1, &options[i].value);
			if (!ok)
				za_dprintf(2, "zonealloc: ignoring %s: not a valid value\n", *e);
		}
		if (!known)
			za_dprintf(2, "zonealloc: unknown option ignored: %s\n", *e);
	}
}

long long za_option(enum za_option opt)
{
	return options[opt].value;
}
