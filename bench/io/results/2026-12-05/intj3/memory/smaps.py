import sys, collections
rss = collections.Counter(); cnt = collections.Counter(); name=None
for line in open(sys.argv[1]):
    f = line.split()
    if '-' in f[0] and len(f) >= 5 and all(c in '0123456789abcdef-' for c in f[0]):
        a, b = (int(x, 16) for x in f[0].split('-'))
        kb = (b - a) // 1024
        name = f[5] if len(f) >= 6 else '[anon %d kB]' % kb
        cnt[name] += 1
    elif f[0] == 'Rss:':
        rss[name] += int(f[1])
tot = sum(rss.values())
print('total Rss %d kB' % tot)
for n, v in rss.most_common():
    if v >= 256: print('%8d kB  %3d x  %s' % (v, cnt[n], n))
