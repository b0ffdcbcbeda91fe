"""Gaps around each fdatasync in a `perf script` dump of io_uring events
(trace.sh): last segment-write completion to fdatasync submission,
fdatasync submission to completion, and completion to the next segment
write's submission. Times are when the kernel saw each event."""
import re,sys,statistics as S
reqop={}; ev=[]
for l in open(sys.argv[1]):
    m=re.search(r'^\s*(\S+)\s+\d+\s+\[\d+\]\s+(\d+\.\d+):\s+(\S+):\s*(.*)$',l)
    if not m: continue
    comm,t,k,rest=m.groups(); t=float(t)*1000; k=k.split(':')[-1]
    if k=='io_uring_submit_req':
        req=re.search(r'req (\S+),',rest).group(1); op=re.search(r'opcode (\S+),',rest).group(1); reqop[req]=op
        ev.append((t,'SUB',op))
    elif k=='io_uring_complete':
        req=re.search(r'req (\S+),',rest).group(1); res=int(re.search(r'result (-?\d+)',rest).group(1))
        ev.append((t,'CQE',reqop.get(req,'?') if res>=0 else 'X'))
W=('WRITE','WRITE_FIXED')
after_sync=[]; drain=[]; sync=[]
last_wcqe=None; sync_sub=None; pending=None; inflight=0
busy_write=0; tprev=None; t_first=ev[0][0]; t_last=ev[-1][0]; sync_time=0
for t,k,op in ev:
    if tprev is not None:
        if inflight>0: busy_write+=t-tprev
    tprev=t
    if k=='SUB' and op in W:
        inflight+=1
        if pending is not None: after_sync.append(t-pending); pending=None
    if k=='CQE' and op in W: inflight-=1; last_wcqe=t
    if k=='SUB' and op=='FSYNC':
        sync_sub=t
        if last_wcqe: drain.append(t-last_wcqe)
    if k=='CQE' and op=='FSYNC':
        sync.append(t-sync_sub); pending=t
tot=t_last-t_first
def q(x): x=sorted(x); return f"n={len(x)} p50={x[len(x)//2]:.3f} p90={x[int(len(x)*.9)]:.3f} sum={sum(x):.1f}ms"
print("run", round(tot,1),"ms")
print("last write CQE -> FSYNC SUB:", q(drain))
print("FSYNC SUB -> CQE:", q(sync))
print("FSYNC CQE -> next write SUB:", q(after_sync))
