// C++ through zonealloc's own operator new and delete: containers,
// aligned new, the new_handler loop, std::bad_alloc under a limit, nothrow
// new, and a sized delete with the wrong size reported as misuse (which
// only zonealloc's operators can do: libstdc++'s drop the size). Built
// twice: linked with libzonealloc.a, and plain, run under LD_PRELOAD.
// `test_cxx limit` is the part run with ZONEALLOC_LIMIT=64M (the test
// re-executes itself with it).
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <new>
#include <string>
#include <vector>

#include <malloc.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static int checks, failed;
#define CHECK(cond, ...)                                                       \
	do {                                                                   \
		checks++;                                                      \
		if (!(cond)) {                                                 \
			failed++;                                              \
			std::fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
			std::fprintf(stderr, __VA_ARGS__);                     \
			std::fputc('\n', stderr);                              \
		}                                                              \
	} while (0)

struct alignas(64) Line {
	char bytes[64];
};
struct alignas(8192) Page {
	char bytes[100];
};

static void containers()
{
	std::map<int, std::string> m;
	for (int i = 0; i < 100000; i++)
		m[i] = "value " + std::to_string(i * 7);
	long sum = 0;
	for (auto &kv : m)
		sum += (long)kv.second.size();
	CHECK(m.size() == 100000 && m[99999] == "value 699993", "map: %zu entries", m.size());
	for (int i = 0; i < 100000; i += 2)
		m.erase(i);
	CHECK(m.size() == 50000 && sum > 0, "map after erase: %zu", m.size());

	std::vector<std::string> v;
	std::string s;
	for (int i = 0; i < 20000; i++) {
		s += char('a' + i % 26);
		if (i % 100 == 0)
			v.push_back(s);
	}
	CHECK(v.size() == 200 && v[199].size() == 19901 && s.size() == 20000, "vector %zu", v.size());
	std::vector<int> big(1 << 22, 3);   // 16 MiB: a huge mapping
	CHECK(big[(1 << 22) - 1] == 3, "big vector");
}

static void aligned()
{
	Line *l = new Line;
	Line *ls = new Line[33];
	Page *pg = new Page;
	Page *pgs = new Page[3];
	CHECK(((uintptr_t)l & 63) == 0 && ((uintptr_t)ls & 63) == 0, "alignas(64): %p %p", (void *)l,
	      (void *)ls);
	CHECK(((uintptr_t)pg & 8191) == 0 && ((uintptr_t)pgs & 8191) == 0, "alignas(8192): %p %p",
	      (void *)pg, (void *)pgs);
	std::memset(ls, 1, 33 * sizeof *ls);
	delete l;
	delete[] ls;
	delete pg;
	delete[] pgs;
	Line *n = new (std::nothrow) Line;
	CHECK(n && ((uintptr_t)n & 63) == 0, "nothrow alignas(64)");
	delete n;
}

// Runs `misuse` in a child; it must die of SIGABRT with `want` on stderr.
static void expect_abort(void (*misuse)(), const char *name, const char *want)
{
	int fds[2];
	if (pipe(fds))
		std::abort();
	pid_t pid = fork();
	if (pid == 0) {
		dup2(fds[1], 2);
		misuse();
		_exit(0);
	}
	close(fds[1]);
	char out[4096] = { 0 };
	size_t n = 0;
	ssize_t r;
	while (n < sizeof out - 1 && (r = read(fds[0], out + n, sizeof out - 1 - n)) > 0)
		n += (size_t)r;
	close(fds[0]);
	int status;
	waitpid(pid, &status, 0);
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "%s: status %d", name, status);
	CHECK(std::strstr(out, want), "%s: report: %s", name, out);
}

// A sized delete reaches zonealloc with its size: 100 bytes come from the
// 112-byte class, and a delete that says 1000 is reported; so are an
// aligned delete of a block not so aligned and an aligned sized delete
// with the wrong size.
static void wrong_size() { ::operator delete(::operator new(100), 1000); }
static void wrong_size_array() { ::operator delete[](::operator new[](5000), 50); }
static void wrong_alignment()
{
	void *p = ::operator new(64, std::align_val_t(64));
	if (((uintptr_t)p & 4095) == 0)   // by chance page aligned: make it not
		p = ::operator new(64, std::align_val_t(64));
	::operator delete(p, std::align_val_t(4096));
}
static void wrong_aligned_size()
{
	::operator delete(::operator new(100000, std::align_val_t(256)), 10, std::align_val_t(256));
}

// An object a bigger class lent (slab/size_class.h): 9000 bytes past the
// 9216-byte class's first four objects, while the 9728-byte class has
// free ones, get a 9728-byte object. Its sized delete names 9000.
static void *lent_object()
{
	void *own[8], *lender[2];
	for (auto &p : own)
		p = ::operator new(9000);
	for (auto &p : lender)
		p = ::operator new(9700);
	for (auto p : lender)
		::operator delete(p, 9700);
	void *p = ::operator new(9000);
	for (auto q : own)
		::operator delete(q, 9000);
	return p;
}
static void wrong_size_lent() { ::operator delete(lent_object(), 7000); }

static void sized_delete_mismatch()
{
	void *lent = lent_object();
	CHECK(malloc_usable_size(lent) == 9728, "a lent object: %zu usable bytes",
	      malloc_usable_size(lent));
	::operator delete(lent, 9000);   // the size asked for: fine
	expect_abort(wrong_size_lent, "wrong sized delete of a lent object",
		     ", 7000): size does not match the allocation (9728 usable bytes; 7000 bytes "
		     "would have 7168)");
	void *ok = ::operator new(100);
	::operator delete(ok, 100);   // right size: fine
	ok = ::operator new(300, std::align_val_t(128));
	::operator delete(ok, 300, std::align_val_t(128));
	expect_abort(wrong_size, "wrong sized delete",
		     ", 1000): size does not match the allocation (112 usable bytes; 1000 bytes "
		     "would have 1024)");
	expect_abort(wrong_size_array, "wrong sized delete[]",
		     "operator delete[](0x");
	expect_abort(wrong_alignment, "wrong aligned delete", "): pointer is not aligned to 4096");
	expect_abort(wrong_aligned_size, "wrong aligned sized delete",
		     ", 10): size does not match the allocation (102400 usable bytes; 10 bytes would "
		     "have 256)");
}

static char *reserve;
static int handler_calls;
static void release_reserve()
{
	handler_calls++;
	std::free(reserve);
	reserve = nullptr;
	std::set_new_handler(nullptr);
}

// Under ZONEALLOC_LIMIT=64M.
static void limited()
{
	bool threw = false;
	try {
		char *p = new char[200 << 20];
		p[0] = 1;
		delete[] p;
	} catch (const std::bad_alloc &) {
		threw = true;
	}
	CHECK(threw, "new char[200 MiB] under a 64 MiB limit did not throw");
	char *q = new (std::nothrow) char[200 << 20];
	CHECK(q == nullptr, "nothrow new of 200 MiB under a 64 MiB limit: %p", (void *)q);

	// A new_handler that frees a reserve lets the allocation succeed.
	reserve = (char *)std::malloc(36 << 20);
	std::memset(reserve, 1, 36 << 20);
	std::set_new_handler(release_reserve);
	char *r = nullptr;
	try {
		r = new char[36 << 20];
	} catch (const std::bad_alloc &) {
	}
	CHECK(r && handler_calls == 1, "new_handler: %p after %d calls", (void *)r, handler_calls);
	delete[] r;
}

int main(int argc, char **argv)
{
	if (argc > 1 && !std::strcmp(argv[1], "limit")) {
		limited();
		std::printf("cxx (ZONEALLOC_LIMIT=64M): %d checks, %d failed\n", checks, failed);
		return failed != 0;
	}
	containers();
	aligned();
	sized_delete_mismatch();

	pid_t pid = fork();
	if (pid == 0) {
		setenv("ZONEALLOC_LIMIT", "64M", 1);
		execl("/proc/self/exe", argv[0], "limit", (char *)nullptr);
		_exit(127);
	}
	int status;
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the limited part: status %d", status);
	std::printf("cxx: %d checks, %d failed\n", checks, failed);
	return failed != 0;
}
