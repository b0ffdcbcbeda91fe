// Spins on one CPU for N seconds, reading CLOCK_MONOTONIC; reports the
// gaps between consecutive reads (time the thread did not run).
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static long long now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1000000000LL+t.tv_nsec;}
int main(int c,char**v){int cpu=atoi(v[1]);double secs=atof(v[2]);cpu_set_t s;CPU_ZERO(&s);CPU_SET(cpu,&s);sched_setaffinity(0,sizeof s,&s);
 long long th[]={20000,50000,100000,250000,500000,1000000,2000000,5000000,10000000};int nt=9;long long cnt[9]={0};long long lost[9]={0};
 long long start=now(),prev=start,end=start+(long long)(secs*1e9),maxg=0;
 while(1){long long t=now();long long g=t-prev;prev=t;if(t>end)break;for(int i=0;i<nt;i++)if(g>=th[i]){cnt[i]++;lost[i]+=g;}if(g>maxg)maxg=g;}
 printf("cpu %d %.0fs: max gap %.3f ms\n",cpu,secs,maxg/1e6);
 for(int i=0;i<nt;i++)printf("  gaps >= %6.3f ms: %6lld  (%.3f%% of time)\n",th[i]/1e6,cnt[i],100.0*lost[i]/(end-start));}
