// vcpu_migration: append + fdatasync with one or two files, on one vCPU or moving between them (see README.md).
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e6+t.tv_nsec/1e3;}
static void pinto(int c){cpu_set_t s;CPU_ZERO(&s);CPU_SET(c,&s);sched_setaffinity(0,sizeof s,&s);}
int cmp(const void*a,const void*b){double x=*(double*)a,y=*(double*)b;return x<y?-1:x>y;}
int main(int argc,char**argv){ int rounds=atoi(argv[1]); int fd[2]; off_t off[2]={0,0}; char rec[130]; memset(rec,'x',130);
 for(int f=0;f<2;f++){char p[256];snprintf(p,256,"%s/m%d",argv[2],f);unlink(p);fd[f]=open(p,O_RDWR|O_CREAT|O_TRUNC,0644);posix_fallocate(fd[f],0,256<<20);fdatasync(fd[f]);}
 int per=200; static double t[4][100000]; int cnt[4]={0};
 const char*names[4]={"1 file, 1 cpu","1 file, cpu alternates","2 files, 1 cpu","2 files, file j on cpu j"};
 for(int r=0;r<rounds;r++) for(int m=0;m<4;m++){ for(int i=0;i<per;i++){ int f=(m>=2)?i%2:0; int c=(m==1||m==3)?i%2:0; pinto(c);
    pwrite(fd[f],rec,130,off[f]); off[f]+=130; double a=now(); fdatasync(fd[f]); t[m][cnt[m]++]=now()-a; } }
 for(int m=0;m<4;m++){ qsort(t[m],cnt[m],sizeof(double),cmp); printf("%-28s fdatasync med %.0f p25 %.0f p75 %.0f us\n",names[m],t[m][cnt[m]/2],t[m][cnt[m]/4],t[m][3*cnt[m]/4]); }
 return 0;}
