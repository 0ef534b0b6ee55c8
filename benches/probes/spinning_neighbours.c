// spinning_neighbours: append + fdatasync with 0, 1 or 2 threads spinning beside it, taking turns (see README.md).
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e6+t.tv_nsec/1e3;}
int cmp(const void*a,const void*b){double x=*(double*)a,y=*(double*)b;return x<y?-1:x>y;}
static volatile int spinners_on[2]; static volatile int quit; static int yieldmode;
static void* spinner(void*a){ long id=(long)a; while(!quit){ if(spinners_on[id]){ if(yieldmode) sched_yield(); } else usleep(200);} return 0;}
int main(int argc,char**argv){ int rounds=atoi(argv[1]); yieldmode=atoi(argv[3]); char p[256]; snprintf(p,256,"%s/s0",argv[2]); unlink(p); int fd=open(p,O_RDWR|O_CREAT|O_TRUNC,0644); posix_fallocate(fd,0,256<<20); fdatasync(fd);
 pthread_t t[2]; for(long i=0;i<2;i++) pthread_create(&t[i],0,spinner,(void*)i);
 char rec[130]; memset(rec,'x',130); off_t off=0; static double d[3][100000]; int cnt[3]={0}; int per=100;
 for(int r=0;r<rounds;r++) for(int m=0;m<3;m++){ spinners_on[0]=m>=1; spinners_on[1]=m>=2; usleep(1000);
   for(int i=0;i<per;i++){ double a=now(); pwrite(fd,rec,130,off); off+=130; fdatasync(fd); d[m][cnt[m]++]=now()-a; } }
 spinners_on[0]=spinners_on[1]=0; quit=1; pthread_join(t[0],0); pthread_join(t[1],0);
 for(int m=0;m<3;m++){ double s=0; for(int i=0;i<cnt[m];i++) s+=d[m][i]; qsort(d[m],cnt[m],sizeof(double),cmp); printf("%d spinners (%s): mean %.0f med %.0f p90 %.0f us\n",m,yieldmode?"sched_yield":"busy",s/cnt[m],d[m][cnt[m]/2],d[m][9*cnt[m]/10]); }
 return 0;}
