# Hashes, arrays, regexes and sorting; prints what it built.
use strict;
use warnings;
my %h;
for my $i (1 .. 100000) {
    my $k = "key" . ($i * 7919 % 50021);
    push @{ $h{$k} }, $i;
    delete $h{ "key" . ($i * 31 % 50021) } if $i % 4 == 0;
}
my $n = 0;
$n += scalar @{ $h{$_} } for keys %h;
print "hash ", scalar(keys %h), " $n\n";
my @words = map { sprintf("w%05d", $_ * 40503 % 99991) x (1 + $_ % 5) } 1 .. 50000;
my @sorted = sort @words;
print "sorted $sorted[0] $sorted[-1] ", scalar(@sorted), "\n";
my $text = join(" ", @sorted[0 .. 5000]);
my $count = () = $text =~ /w0\d{4}/g;
(my $swapped = $text) =~ s/(w\d)(\d+)/$2$1/g;
print "regex $count ", length($swapped), "\n";
