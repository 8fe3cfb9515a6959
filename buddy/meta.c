/*
 * Metadata objects (per-thread caches, thread heaps, huge-mapping records)
 * come from here, never from the heap they describe: chunks mapped from
 * the OS, carved into 64-byte-aligned objects, one free list per size.
 */
#include "buddy/buddy.h"

#include <string.h>

#define META_CHUNK   ((size_t)256 << 10)
#define META_ALIGN   64
#define META_CLASSES 64   /* sizes 64 .. 4096 in steps of 64 */

struct meta_free {
	struct meta_free *next;
};

static pthread_mutex_t meta_lock = PTHREAD_MUTEX_INITIALIZER;
static struct meta_free *meta_free_list[META_CLASSES];
static char *meta_bump, *meta_end;

void *za_meta_alloc(size_t size)
{
	size = (size + META_ALIGN - 1) & ~(size_t)(META_ALIGN - 1);
	if (size == 0 || size / META_ALIGN > META_CLASSES)
		return NULL;
	size_t cls = size / META_ALIGN - 1;
	void *obj = NULL;

	za_lock(&meta_lock);
	if (meta_free_list[cls]) {
		obj = meta_free_list[cls];
		meta_free_list[cls] = meta_free_list[cls]->next;
		memset(obj, 0, size);
	} else {
		if ((size_t)(meta_end - meta_bump) < size) {
			void *chunk;
			if (za_os_map_guarded(META_CHUNK, &chunk))
				goto out;
			meta_bump = chunk;
			meta_end = meta_bump + META_CHUNK;
		}
		obj = meta_bump;   /* fresh from mmap: already zero */
		meta_bump += size;
	}
out:
	pthread_mutex_unlock(&meta_lock);
	return obj;
}

void za_meta_free(void *obj, size_t size)
{
	if (!obj)
		return;
	size = (size + META_ALIGN - 1) & ~(size_t)(META_ALIGN - 1);
	size_t cls = size / META_ALIGN - 1;
	struct meta_free *f = obj;

	za_lock(&meta_lock);
	f->next = meta_free_list[cls];
	meta_free_list[cls] = f;
	pthread_mutex_unlock(&meta_lock);
}

void za_meta_lock(void)
{
	za_lock(&meta_lock);
}

void za_meta_unlock(void)
{
	pthread_mutex_unlock(&meta_lock);
}

void za_meta_reset_child(void)
{
	pthread_mutex_init(&meta_lock, NULL);
}
