// The C API of bench/gbench_shim.h over Google Benchmark. Opaque handles
// are the C++ objects themselves: a zb_state is a benchmark::State, a
// zb_bench a benchmark::internal::Benchmark.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "bench/gbench_shim.h"

namespace {

inline benchmark::State &S(zb_state *st)
{
	return *reinterpret_cast<benchmark::State *>(st);
}

inline const benchmark::State &S(const zb_state *st)
{
	return *reinterpret_cast<const benchmark::State *>(st);
}

inline benchmark::internal::Benchmark *B(zb_bench *b)
{
	return reinterpret_cast<benchmark::internal::Benchmark *>(b);
}

inline zb_bench *Z(benchmark::internal::Benchmark *b)
{
	return reinterpret_cast<zb_bench *>(b);
}

benchmark::Counter::Flags counter_flags(unsigned f)
{
	int out = benchmark::Counter::kDefaults;
	if (f & ZB_COUNTER_RATE)
		out |= benchmark::Counter::kIsRate;
	if (f & ZB_COUNTER_AVG_THREADS)
		out |= benchmark::Counter::kAvgThreads;
	if (f & ZB_COUNTER_ITER_INVARIANT)
		out |= benchmark::Counter::kIsIterationInvariant;
	if (f & ZB_COUNTER_AVG_ITERATIONS)
		out |= benchmark::Counter::kAvgIterations;
	if (f & ZB_COUNTER_INVERT)
		out |= benchmark::Counter::kInvert;
	return static_cast<benchmark::Counter::Flags>(out);
}

} // namespace

extern "C" {

zb_bench *zb_register(const char *name, zb_fn fn, void *arg)
{
	try {
		return Z(benchmark::RegisterBenchmark(
			name, [fn, arg](benchmark::State &st) {
				fn(reinterpret_cast<zb_state *>(&st), arg);
			}));
	} catch (...) {
		return nullptr;
	}
}

zb_bench *zb_arg(zb_bench *b, int64_t x)
{
	B(b)->Arg(x);
	return b;
}

zb_bench *zb_args(zb_bench *b, const int64_t *x, size_t n)
{
	B(b)->Args(std::vector<int64_t>(x, x + n));
	return b;
}

zb_bench *zb_range_set(zb_bench *b, int64_t lo, int64_t hi)
{
	B(b)->Range(lo, hi);
	return b;
}

zb_bench *zb_dense_range(zb_bench *b, int64_t lo, int64_t hi, int step)
{
	B(b)->DenseRange(lo, hi, step);
	return b;
}

zb_bench *zb_range_multiplier(zb_bench *b, int multiplier)
{
	B(b)->RangeMultiplier(multiplier);
	return b;
}

zb_bench *zb_arg_name(zb_bench *b, const char *name)
{
	B(b)->ArgName(name);
	return b;
}

zb_bench *zb_threads(zb_bench *b, int threads)
{
	B(b)->Threads(threads);
	return b;
}

zb_bench *zb_thread_range(zb_bench *b, int lo, int hi)
{
	B(b)->ThreadRange(lo, hi);
	return b;
}

zb_bench *zb_set_iterations(zb_bench *b, int64_t n)
{
	B(b)->Iterations(n);
	return b;
}

zb_bench *zb_repetitions(zb_bench *b, int n)
{
	B(b)->Repetitions(n);
	return b;
}

zb_bench *zb_min_time(zb_bench *b, double seconds)
{
	B(b)->MinTime(seconds);
	return b;
}

zb_bench *zb_use_real_time(zb_bench *b)
{
	B(b)->UseRealTime();
	return b;
}

zb_bench *zb_measure_process_cpu_time(zb_bench *b)
{
	B(b)->MeasureProcessCPUTime();
	return b;
}

zb_bench *zb_unit(zb_bench *b, enum zb_unit unit)
{
	static const benchmark::TimeUnit units[] = {
		benchmark::kNanosecond, benchmark::kMicrosecond, benchmark::kMillisecond,
		benchmark::kSecond,
	};
	B(b)->Unit(units[unit <= ZB_S ? unit : ZB_NS]);
	return b;
}

int zb_main(int *argc, char **argv)
{
	benchmark::Initialize(argc, argv);
	if (benchmark::ReportUnrecognizedArguments(*argc, argv))
		return 1;
	benchmark::RunSpecifiedBenchmarks();
	benchmark::Shutdown();
	return 0;
}

int zb_keep_running(zb_state *st)
{
	return S(st).KeepRunning();
}

int zb_keep_running_batch(zb_state *st, int64_t n)
{
	return S(st).KeepRunningBatch(n);
}

int64_t zb_iterations(const zb_state *st)
{
	return S(st).iterations();
}

int64_t zb_range(const zb_state *st, size_t i)
{
	return S(st).range(i);
}

int zb_thread_index(const zb_state *st)
{
	return S(st).thread_index();
}

int zb_thread_count(const zb_state *st)
{
	return S(st).threads();
}

void zb_pause(zb_state *st)
{
	S(st).PauseTiming();
}

void zb_resume(zb_state *st)
{
	S(st).ResumeTiming();
}

void zb_set_items_processed(zb_state *st, int64_t items)
{
	S(st).SetItemsProcessed(items);
}

void zb_set_bytes_processed(zb_state *st, int64_t bytes)
{
	S(st).SetBytesProcessed(bytes);
}

void zb_set_counter(zb_state *st, const char *name, double value, unsigned flags)
{
	S(st).counters[name] = benchmark::Counter(value, counter_flags(flags));
}

void zb_set_label(zb_state *st, const char *label)
{
	S(st).SetLabel(label);
}

void zb_skip_with_error(zb_state *st, const char *msg)
{
	S(st).SkipWithError(msg);
}

} // extern "C"
