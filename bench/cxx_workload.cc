// A C++ workload for the benchmark suite: what C++ programs do to a heap
// through operator new and delete (sized deletes, since C++14): node-based
// containers built and torn down, strings grown and copied, vectors of
// small objects, shared_ptr. Linked with no allocator: bench/compare runs
// it under each (LD_PRELOAD). Prints a checksum so the work is not dropped.
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

struct Node {
	std::string name;
	std::vector<int> values;
	std::shared_ptr<Node> next;
};

int main(int argc, char **argv)
{
	long rounds = argc > 1 ? std::atol(argv[1]) : 40;
	unsigned long sum = 0;
	for (long r = 0; r < rounds; r++) {
		std::map<std::string, int> index;
		std::unordered_map<int, std::string> names;
		std::vector<std::shared_ptr<Node>> nodes;
		for (int i = 0; i < 20000; i++) {
			std::string key = "key-" + std::to_string(i * 2654435761u % 100000) + "-" +
					  std::to_string(r);
			index[key] = i;
			names.emplace(i, key + key);
			auto n = std::make_shared<Node>();
			n->name = key;
			n->values.assign((size_t)(i % 13) + 1, i);
			if (!nodes.empty() && i % 3)
				n->next = nodes.back();
			nodes.push_back(std::move(n));
		}
		for (auto it = index.begin(); it != index.end();) {
			sum += it->first.size();
			it = it->second % 2 ? index.erase(it) : std::next(it);
		}
		for (int i = 0; i < 20000; i += 3)
			names.erase(i);
		for (auto &n : nodes)
			sum += n->values.size() + (n->next ? 1 : 0);
		sum += index.size() + names.size();
	}
	std::printf("%lu\n", sum);
	return 0;
}
