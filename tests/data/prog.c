/* Compiled by gcc under the preload; its output is compared too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct node {
	struct node *next;
	int key;
	char name[24];
};

static int cmp(const void *a, const void *b)
{
	return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b);
}

int main(void)
{
	struct node *head = NULL;
	for (int i = 0; i < 1000; i++) {
		struct node *n = malloc(sizeof *n);
		n->key = i * 7919 % 1009;
		snprintf(n->name, sizeof n->name, "node-%d", n->key);
		n->next = head;
		head = n;
	}
	int keys[1000], k = 0;
	while (head) {
		struct node *n = head;
		keys[k++] = n->key;
		head = n->next;
		free(n);
	}
	qsort(keys, 1000, sizeof keys[0], cmp);
	printf("min %d max %d median %d\n", keys[0], keys[999], keys[500]);
	return 0;
}
