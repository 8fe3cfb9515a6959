# A Perl program's heap, as bench/run-external measures it: hashes of
# records, regular expressions over built strings, sorting, and a phase
# that drops most of what it made. Deterministic: it prints the same
# numbers under any allocator.
use strict;
use warnings;

my ($lines, $chars, $keys) = (0, 0, 0);
for my $round (1 .. 3) {
    my %h;
    for my $i (1 .. 100000) {
        my $k = "key" . ($i * 7919 % 100003);
        $h{$k} = { id => $i, name => "name-$i-$round", list => [ $i % 7, $i % 11, $i % 13 ] };
    }
    my @text = map { "$_=$h{$_}{name};" . join(",", @{ $h{$_}{list} }) } sort keys %h;
    my $all = join("\n", @text);
    my @hits = ($all =~ /name-(\d+)7-/g);
    $lines += scalar @text;
    $chars += length $all;
    $keys += scalar @hits;
    my @keep = grep { $h{$_}{id} % 10 == 0 } keys %h;
    undef %h;
    $keys += scalar @keep;
}
print "$lines $chars $keys\n";
