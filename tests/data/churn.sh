# Arrays, associative arrays, string operations, functions and subshells.
declare -a arr
declare -A map
for ((i = 0; i < 20000; i++)); do
	arr+=("item$((i * 7919 % 10007))")
	map["k$((i % 3001))"]+="x"
done
echo "array ${#arr[@]} map ${#map[@]}"
s=""
for ((i = 0; i < 3000; i++)); do s+="${arr[i]:0:5}"; done
echo "string ${#s} ${s:100:20}"
f() { local a=("$@"); echo "${#a[@]}"; }
echo "function $(f "${arr[@]:0:500}")"
sorted=$(printf '%s\n' "${arr[@]:0:5000}" | sort | uniq | wc -l)
echo "sorted $sorted"
unset 'arr[5]' 'arr[6]'
echo "after unset ${#arr[@]}"
