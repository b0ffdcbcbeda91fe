"""Events around chosen fdatasync completions in a `perf script` dump
(trace.sh): usage trace-window.py TRACE N... (the Nth completion), times in
ms relative to it. SUB/CQE are io_uring submissions and completions
(X: a negative result), ISSUE/DONE block requests (size in 512-byte
sectors), SW context switches on the CPU."""
import re,sys
reqop={}; ev=[]
for l in open(sys.argv[1]):
    m=re.search(r'^\s*(\S+)\s+\d+\s+\[\d+\]\s+(\d+\.\d+):\s+(\S+):\s*(.*)$',l)
    if not m: continue
    comm,t,k,rest=m.groups(); t=float(t)*1000; k=k.split(':')[-1]
    if k=='io_uring_submit_req':
        req=re.search(r'req (\S+),',rest).group(1); op=re.search(r'opcode (\S+),',rest).group(1); reqop[req]=op
        ev.append((t,comm,'SUB '+op))
    elif k=='io_uring_complete':
        req=re.search(r'req (\S+),',rest).group(1); res=int(re.search(r'result (-?\d+)',rest).group(1))
        ev.append((t,comm,'CQE '+(reqop.get(req,'?') if res>=0 else 'X')+f' {res}'))
    elif k=='sched_switch':
        m2=re.search(r'prev_comm=(\S+).*prev_state=(\S+).*next_comm=(\S+)',rest)
        ev.append((t,comm,f'SW {m2.group(1)}[{m2.group(2)}] -> {m2.group(3)}'))
    else:
        m2=re.search(r'254,0 (\S+) (?:\d+ )?\(\) \d+ \+ (\d+)',rest)
        if m2: ev.append((t,comm,('ISSUE ' if 'issue' in k else 'DONE  ')+m2.group(1)+' '+m2.group(2)))
idx=[i for i,e in enumerate(ev) if e[2].startswith('CQE FSYNC')]
for j in map(int,sys.argv[2:]):
    i=idx[j]; t0=ev[i][0]
    print('----')
    k=i-12
    while k<len(ev) and ev[k][0]<t0+1.5:
        print(f"{ev[k][0]-t0:8.3f} {ev[k][1][:16]:16} {ev[k][2]}"); k+=1
